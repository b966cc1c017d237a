//! Calls into the foreign language, made safe while the foreign runtime shuts down.
//!
//! Rust threads call foreign code: the tokio runtime's threads wake the foreign futures
//! awaiting exported async functions (uniffi invokes the foreign continuation callback on the
//! waking thread), run reverse-call handlers, and release foreign objects (progress callbacks,
//! handlers). While a foreign runtime shuts down that is fatal: once CPython has started
//! finalizing (the script ended with a task still awaiting an upload), a thread that takes the
//! GIL is ended with `pthread_exit`, whose forced unwinding meets the `catch_unwind` of the tokio
//! task on that thread and aborts the process (`FATAL: exception not rethrown`); later in the
//! teardown the callback's ctypes thunk is freed and the call segfaults.
//!
//! So every such call passes a process-wide [gate](enter), open until the foreign runtime
//! starts shutting down. A closed gate turns a wake into nothing (nobody will poll again), a
//! reverse call into `Unavailable`, a progress report into a stopped transfer, and a foreign
//! object's release into a leak. The gate closes
//! - in CPython, from an `atexit` callback this library registers through the C API the first
//!   time an exported future is polled. `atexit` callbacks run before the interpreter starts
//!   finalizing; this one waits (with the GIL released, at most [`DRAIN`]) for the calls already
//!   past the gate, so no Rust thread is inside Python when finalization begins, and then
//!   [wakes every awaiting future](wake_all) itself, so that uniffi holds no continuation
//!   callback when the teardown frees the futures (it would call it, after the module holding
//!   the callback was cleared). An exported future polled after that (a later `atexit` callback
//!   running the event loop) reopens the gate, unless the interpreter is already finalizing;
//! - in any process, from a C `atexit` handler (`exit()` with work in flight in Kotlin/JVM or
//!   Swift).
//!
//! Callbacks made on the foreign thread that polls a future (progress reports) are safe in
//! themselves; they pass the gate only so that a transfer stops reporting once the process is
//! exiting.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once, OnceLock, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// Longest the shutdown waits for foreign calls already in progress.
const DRAIN: Duration = Duration::from_secs(2);

struct GateState {
    closed: bool,
    /// Closed by the Python hook, which a later poll from Python may undo.
    reopenable: bool,
    in_flight: usize,
}

/// Open until the foreign runtime shuts down; counts the calls past it.
struct Gate {
    state: Mutex<GateState>,
    idle: Condvar,
}

static GATE: Gate = Gate::new();

thread_local! {
    /// Gated calls in progress on this thread (a shutdown started from inside one does not
    /// wait for itself).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Permission to call into the foreign runtime, held for the duration of the call.
#[must_use]
pub(crate) struct Entered(&'static Gate);

impl Drop for Entered {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        let mut state = self.0.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.closed {
            self.0.idle.notify_all();
        }
    }
}

impl Gate {
    const fn new() -> Self {
        Self {
            state: Mutex::new(GateState {
                closed: false,
                reopenable: false,
                in_flight: 0,
            }),
            idle: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `None` once closed.
    fn enter(&'static self) -> Option<Entered> {
        let mut state = self.state();
        if state.closed {
            return None;
        }
        state.in_flight += 1;
        DEPTH.with(|d| d.set(d.get() + 1));
        Some(Entered(self))
    }

    /// Closes the gate; returns whether calls of other threads are still in progress.
    fn close(&self) -> bool {
        let mut state = self.state();
        state.closed = true;
        state.reopenable = false;
        state.in_flight > DEPTH.with(Cell::get)
    }

    /// As [`Gate::close`], for a shutdown that [`Gate::reopen`] may undo.
    fn close_reopenable(&self) -> bool {
        let mut state = self.state();
        state.closed = true;
        state.reopenable = true;
        state.in_flight > DEPTH.with(Cell::get)
    }

    /// Opens a gate closed by [`Gate::close_reopenable`] again.
    fn reopen(&self) {
        let mut state = self.state();
        if state.closed && state.reopenable {
            state.closed = false;
            state.reopenable = false;
        }
    }

    /// Waits (at most `limit`) until no other thread is inside a gated call.
    fn drain(&self, limit: Duration) {
        let own = DEPTH.with(Cell::get);
        let deadline = Instant::now() + limit;
        let mut state = self.state();
        while state.in_flight > own {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .idle
                .wait_timeout(state, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

/// Enters the gate: `None` once the foreign runtime is shutting down.
pub(crate) fn enter() -> Option<Entered> {
    GATE.enter()
}

/// Installs the hooks that close the gate (once per process).
fn install_exit_hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        python::register_atexit();
        // SAFETY: `atexit` only stores the function pointer; `close_at_exit` cannot unwind.
        unsafe {
            libc::atexit(close_at_exit);
        }
    });
}

/// The C `atexit` handler: later foreign calls from Rust threads are skipped.
extern "C" fn close_at_exit() {
    GATE.close();
}

/// Runs `future` (the body of an exported async function) so that the Rust threads that wake
/// it reach the foreign runtime only through the gate.
pub fn exit_safe<F: Future>(future: F) -> ExitSafe<F> {
    let relay = Arc::new(Relay {
        id: NEXT_RELAY.fetch_add(1, Ordering::Relaxed),
        target: Mutex::new(None),
    });
    relays().insert(relay.id, Arc::downgrade(&relay));
    ExitSafe {
        inner: Box::pin(future),
        relay,
    }
}

/// See [`exit_safe`].
pub struct ExitSafe<F> {
    inner: Pin<Box<F>>,
    relay: Arc<Relay>,
}

impl<F> std::fmt::Debug for ExitSafe<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExitSafe").finish_non_exhaustive()
    }
}

static NEXT_RELAY: AtomicU64 = AtomicU64::new(0);

/// The relays of the exported futures alive, for [`wake_all`].
fn relays() -> MutexGuard<'static, HashMap<u64, Weak<Relay>>> {
    static RELAYS: OnceLock<Mutex<HashMap<u64, Weak<Relay>>>> = OnceLock::new();
    RELAYS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Passes wakes on to the foreign future's waker, through the gate.
struct Relay {
    id: u64,
    /// The foreign future's waker while it waits for a wake (uniffi then holds the foreign
    /// continuation callback, and calls it on the waking thread).
    target: Mutex<Option<Waker>>,
}

impl Relay {
    fn target(&self) -> MutexGuard<'_, Option<Waker>> {
        self.target.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let (waker, entered) = {
            let mut target = self.target();
            if target.is_none() {
                return;
            }
            // A closed gate: the waker stays for `wake_all`, which the shutdown runs on its
            // own thread while the foreign runtime is still intact.
            let Some(entered) = enter() else { return };
            (target.take(), entered)
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        drop(entered);
    }
}

/// Wakes every exported future waiting for a wake, on the calling thread (the one shutting the
/// foreign runtime down, while it is still intact): uniffi hands the foreign side its
/// continuation now, and holds none later, when the foreign side frees the future during its
/// teardown (calling a continuation then would call freed foreign code).
fn wake_all() {
    let relays: Vec<Arc<Relay>> = relays().values().filter_map(Weak::upgrade).collect();
    for relay in relays {
        let waker = relay.target().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<F: Future> Future for ExitSafe<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        install_exit_hooks();
        // Polled after the Python hook closed the gate (a later atexit callback running the
        // event loop): the interpreter still runs code, so the runtime may call into it again.
        if !python::finalizing() {
            GATE.reopen();
        }
        let this = self.get_mut();
        {
            let mut target = this.relay.target();
            match target.as_ref() {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *target = Some(cx.waker().clone()),
            }
        }
        let relay = Waker::from(Arc::clone(&this.relay));
        this.inner.as_mut().poll(&mut Context::from_waker(&relay))
    }
}

impl<F> Drop for ExitSafe<F> {
    fn drop(&mut self) {
        relays().remove(&self.relay.id);
    }
}

/// A call into foreign code made by a Rust thread (a reverse-call handler): `make` runs, and the
/// future it returns is polled, only through the gate. Resolves to `None` once the foreign
/// runtime is shutting down; dropped then, the foreign future is leaked rather than released.
pub fn foreign_call<F, M>(make: M) -> ForeignCall<F, M>
where
    M: FnOnce() -> F + Unpin,
    F: Future,
{
    ForeignCall {
        make: Some(make),
        future: None,
    }
}

/// See [`foreign_call`].
pub struct ForeignCall<F, M> {
    make: Option<M>,
    future: Option<Pin<Box<F>>>,
}

impl<F, M> std::fmt::Debug for ForeignCall<F, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForeignCall")
            .field("started", &self.future.is_some())
            .finish()
    }
}

impl<F: Future, M: FnOnce() -> F + Unpin> Future for ForeignCall<F, M> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(_entered) = enter() else {
            this.make = None;
            std::mem::forget(this.future.take());
            return Poll::Ready(None);
        };
        if let Some(make) = this.make.take() {
            this.future = Some(Box::pin(make()));
        }
        let Some(future) = this.future.as_mut() else {
            return Poll::Ready(None);
        };
        let output = future.as_mut().poll(cx);
        if output.is_ready() {
            this.future = None;
        }
        output.map(Some)
    }
}

impl<F, M> Drop for ForeignCall<F, M> {
    fn drop(&mut self) {
        if let Some(future) = self.future.take() {
            match enter() {
                Some(_entered) => drop(future),
                None => std::mem::forget(future),
            }
        }
    }
}

/// A foreign object (a handler or callback implemented in the foreign language) released only
/// through the gate: once the foreign runtime is shutting down it is leaked instead.
pub struct Foreign<T: ?Sized>(Option<Arc<T>>);

impl<T: ?Sized> Foreign<T> {
    /// Wraps `object`.
    pub fn new(object: Arc<T>) -> Self {
        Self(Some(object))
    }
}

impl<T: ?Sized> Deref for Foreign<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match &self.0 {
            Some(object) => object,
            None => unreachable!("a Foreign is emptied only when dropped"),
        }
    }
}

impl<T: ?Sized> Clone for Foreign<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: ?Sized> std::fmt::Debug for Foreign<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Foreign(..)")
    }
}

impl<T: ?Sized> Drop for Foreign<T> {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            match enter() {
                Some(_entered) => drop(object),
                None => std::mem::forget(object),
            }
        }
    }
}

/// CPython: an `atexit` callback closing the gate, registered through the C API when the
/// library is loaded into a Python process (found with `dlsym`, so nothing links against
/// libpython).
mod python {
    use std::ffi::{c_char, c_int, c_void, CStr};
    use std::sync::OnceLock;

    type Object = c_void;
    type Method = unsafe extern "C" fn(*mut Object, *mut Object) -> *mut Object;

    #[repr(C)]
    struct MethodDef {
        name: *const c_char,
        method: Method,
        flags: c_int,
        doc: *const c_char,
    }

    const METH_NOARGS: c_int = 0x0004;

    type NoArgsInt = unsafe extern "C" fn() -> c_int;
    type TakesInt = unsafe extern "C" fn(c_int);
    type NoArgsPtr = unsafe extern "C" fn() -> *mut c_void;
    type TakesPtr = unsafe extern "C" fn(*mut c_void);
    type Import = unsafe extern "C" fn(*const c_char) -> *mut Object;
    type GetAttr = unsafe extern "C" fn(*mut Object, *const c_char) -> *mut Object;
    type NewFunction =
        unsafe extern "C" fn(*mut MethodDef, *mut Object, *mut Object) -> *mut Object;
    type CallObjArgs = unsafe extern "C" fn(*mut Object, ...) -> *mut Object;
    type NoArgs = unsafe extern "C" fn();

    /// The few C API functions used, from the running interpreter.
    struct Api {
        is_initialized: NoArgsInt,
        is_finalizing: NoArgsInt,
        gil_ensure: NoArgsInt,
        gil_release: TakesInt,
        save_thread: NoArgsPtr,
        restore_thread: TakesPtr,
        import: Import,
        get_attr: GetAttr,
        new_function: NewFunction,
        call: CallObjArgs,
        inc_ref: TakesPtr,
        dec_ref: TakesPtr,
        clear_error: NoArgs,
        /// Address of `_Py_NoneStruct`.
        none: usize,
    }

    /// The address of `name` in the process's global symbols, if any.
    fn symbol(name: &CStr) -> Option<usize> {
        // SAFETY: `dlsym` with RTLD_DEFAULT only looks the NUL-terminated name up.
        let address = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!address.is_null()).then_some(address as usize)
    }

    /// The C API function `name` (one of `names`, the first found), of type `$ty`.
    macro_rules! function {
        ($ty:ty, $($name:literal),+) => {{
            let address = None$(.or_else(|| symbol($name)))+?;
            // SAFETY: the symbol is the C API function of that name, whose C signature `$ty`
            // spells out.
            unsafe { std::mem::transmute::<usize, $ty>(address) }
        }};
    }

    fn load() -> Option<Api> {
        Some(Api {
            is_initialized: function!(NoArgsInt, c"Py_IsInitialized"),
            // `Py_IsFinalizing` from 3.13, `_Py_IsFinalizing` before.
            is_finalizing: function!(NoArgsInt, c"Py_IsFinalizing", c"_Py_IsFinalizing"),
            gil_ensure: function!(NoArgsInt, c"PyGILState_Ensure"),
            gil_release: function!(TakesInt, c"PyGILState_Release"),
            save_thread: function!(NoArgsPtr, c"PyEval_SaveThread"),
            restore_thread: function!(TakesPtr, c"PyEval_RestoreThread"),
            import: function!(Import, c"PyImport_ImportModule"),
            get_attr: function!(GetAttr, c"PyObject_GetAttrString"),
            new_function: function!(NewFunction, c"PyCFunction_NewEx"),
            call: function!(CallObjArgs, c"PyObject_CallFunctionObjArgs"),
            inc_ref: function!(TakesPtr, c"Py_IncRef"),
            dec_ref: function!(TakesPtr, c"Py_DecRef"),
            clear_error: function!(NoArgs, c"PyErr_Clear"),
            none: symbol(c"_Py_NoneStruct")?,
        })
    }

    fn api() -> Option<&'static Api> {
        static API: OnceLock<Option<Api>> = OnceLock::new();
        API.get_or_init(load).as_ref()
    }

    /// Whether this process runs a Python interpreter that is finalizing.
    pub(super) fn finalizing() -> bool {
        // SAFETY: `Py_IsFinalizing` only reads the runtime's state.
        api().is_some_and(|api| unsafe { (api.is_finalizing)() } != 0)
    }

    /// Registers [`on_exit`] with Python's `atexit` module, when running in a live interpreter.
    /// Called on a Python thread (the one polling an exported future, inside a ctypes call that
    /// released the GIL).
    pub(super) fn register_atexit() {
        let Some(api) = api() else { return };
        // SAFETY: C API calls as documented: the GIL is taken (and given back) around the
        // object calls, references are released, a failure only leaves the hook unregistered.
        // The interpreter is checked to be live and not finalizing before the GIL is taken:
        // taking it during finalization would end this thread.
        unsafe {
            if (api.is_initialized)() == 0 || (api.is_finalizing)() != 0 {
                return;
            }
            let gil = (api.gil_ensure)();
            let def = Box::leak(Box::new(MethodDef {
                name: c"fluxon_close_foreign_gate".as_ptr(),
                method: on_exit,
                flags: METH_NOARGS,
                doc: c"Stops Fluxon's threads calling into Python before it finalizes.".as_ptr(),
            }));
            let module = (api.import)(c"atexit".as_ptr());
            let function = (api.new_function)(def, std::ptr::null_mut(), std::ptr::null_mut());
            let mut registered = false;
            if !module.is_null() && !function.is_null() {
                let register = (api.get_attr)(module, c"register".as_ptr());
                if !register.is_null() {
                    let result = (api.call)(register, function, std::ptr::null_mut::<Object>());
                    if !result.is_null() {
                        registered = true;
                        (api.dec_ref)(result);
                    }
                    (api.dec_ref)(register);
                }
            }
            for object in [function, module] {
                if !object.is_null() {
                    (api.dec_ref)(object);
                }
            }
            if !registered {
                (api.clear_error)();
                tracing::debug!("could not register the Python atexit hook");
            }
            (api.gil_release)(gil);
        }
    }

    /// The `atexit` callback (the GIL held): closes the gate and lets the calls in progress
    /// finish, with the GIL released so that they can take it.
    unsafe extern "C" fn on_exit(_module: *mut Object, _args: *mut Object) -> *mut Object {
        let Some(api) = api() else {
            return std::ptr::null_mut();
        };
        if super::GATE.close_reopenable() {
            // SAFETY: this thread holds the GIL (an atexit callback) and takes it back.
            unsafe {
                let state = (api.save_thread)();
                super::GATE.drain(super::DRAIN);
                (api.restore_thread)(state);
            }
        }
        super::wake_all();
        let none = api.none as *mut Object;
        // SAFETY: returning a new reference to None, as a C function must.
        unsafe { (api.inc_ref)(none) };
        none
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_gate_refuses_calls_but_waits_for_those_in_progress() {
        static TEST_GATE: Gate = Gate::new();
        let own = TEST_GATE.enter().expect("a gate starts open");
        let (inside_tx, inside_rx) = std::sync::mpsc::channel();
        let other = std::thread::spawn(move || {
            let _inside = TEST_GATE.enter().expect("still open");
            inside_tx.send(()).expect("signal");
            std::thread::sleep(Duration::from_millis(100));
            Instant::now()
        });
        inside_rx.recv().expect("the other thread entered");
        // The other thread's call holds the shutdown up; this thread's own does not.
        assert!(TEST_GATE.close());
        TEST_GATE.drain(Duration::from_secs(10));
        let drained = Instant::now();
        let left = other.join().expect("thread");
        assert!(
            drained >= left,
            "drain returned before the other call ended"
        );
        assert!(TEST_GATE.enter().is_none(), "a closed gate stays closed");
        drop(own);
        assert_eq!(TEST_GATE.state().in_flight, 0);
    }

    #[test]
    fn a_shutdown_does_not_wait_for_its_own_thread() {
        static TEST_GATE: Gate = Gate::new();
        let _own = TEST_GATE.enter().expect("open");
        assert!(!TEST_GATE.close(), "only this thread's call is in progress");
        let started = Instant::now();
        TEST_GATE.drain(Duration::from_secs(10));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
