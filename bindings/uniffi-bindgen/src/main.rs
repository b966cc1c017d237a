//! `uniffi-bindgen`: generates Kotlin, Swift and Python sources from a Fluxon bindings cdylib
//! (library mode), e.g.
//! `uniffi-bindgen generate target/debug/libapp_bindings.so --language python --out-dir out`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
