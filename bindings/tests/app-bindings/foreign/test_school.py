"""The school client in Python against a live Fluxon server.

Usage: test_school.py ADDRESS CERT_PEM_PATH, with the package `school_app` (the generated
fluxon.py and school.py, libfluxon_school.so and an empty __init__.py) on PYTHONPATH. Prints `ok <step>` per check; exits non-zero on failure.
"""

import asyncio
import datetime
import os
import sys
import tempfile

from school_app import fluxon, school as school_module
from school_app.fluxon import (
    CallOptions,
    CloudStorage,
    ConnectOptions,
    FluxonClient,
    FluxonError,
    Grant,
    RawReverseHandler,
    ReverseService,
    StorageEntryKind,
    StorageOp,
    TransferProgress,
    Trust,
)
from school_app.school import (
    Address,
    BroadcastRequest,
    GrantRequest,
    PathRequest,
    LoginRequest,
    NoticeAck,
    Profile,
    Role,
    SchoolClient,
    SchoolEventsError,
    SchoolEventsHandler,
    SignupRequest,
    SlowRequest,
    school_events_service,
)


def ok(step):
    print(f"ok {step}", flush=True)


class Events(SchoolEventsHandler):
    """Answers the server's reverse calls."""

    def __init__(self):
        self.seen = []

    async def notify(self, request):
        self.seen.append(request.text)
        assert request.sent_at is not None
        if request.text == "refuse":
            raise SchoolEventsError.PermissionDenied(detail="this device refuses")
        await asyncio.sleep(0.01)
        return NoticeAck(reply=f"python got {request.text}")


class Progress(TransferProgress):
    """Records every progress report; raises Cancelled once `stop_after` bytes have moved."""

    def __init__(self, stop_after=None):
        self.reports = []
        self.stop_after = stop_after

    def on_progress(self, done, total):
        self.reports.append((done, total))
        if self.stop_after is not None and done >= self.stop_after:
            raise FluxonError.Cancelled(detail="stopped by the test")

    def check_complete(self, size):
        assert self.reports, "no progress reported"
        dones = [d for d, _ in self.reports]
        assert dones == sorted(dones), f"progress went backwards: {self.reports}"
        assert all(t == size for _, t in self.reports), self.reports
        assert self.reports[-1] == (size, size), self.reports


async def storage_checks(school, client, user_id, workdir):
    """Grants from the school's routes and transfers with them."""
    storage = client.storage()
    assert isinstance(storage, CloudStorage)
    folder = f"u{user_id}"

    async def grant(op, path="", **kw):
        reply = await school.storage_grant(GrantRequest(op=op, path=path, dest_path=kw.pop("dest_path", ""),
                                                        max_bytes=kw.pop("max_bytes", None),
                                                        resumable=kw.pop("resumable", False),
                                                        upload_id=kw.pop("upload_id", "")))
        assert reply.grant is not None and reply.issued > 0
        return reply.grant

    # The grant is a record of the fluxon namespace, passed on unchanged.
    await storage.create_directory(await grant(StorageOp.CREATE_DIRECTORY), folder)
    up = await grant(StorageOp.WRITE_FILE, "big.bin")
    assert isinstance(up, Grant)
    assert up.op == StorageOp.WRITE_FILE and up.path == f"{folder}/big.bin", up
    assert len(up.signature) == 32 and len(up.nonce) == 16 and len(up.session_id) == 16
    assert up.expires_at > 0 and not up.reusable and len(up.upload_id) == 32
    bare = await school.read_grant(PathRequest(path="big.bin"))
    assert isinstance(bare, Grant) and bare.op == StorageOp.READ_FILE
    assert bare.path == f"{folder}/big.bin" and bare.upload_id == ""
    ok("storage-grant")

    data = os.urandom(700 * 1024 + 123)
    source = os.path.join(workdir, "source.bin")
    with open(source, "wb") as f:
        f.write(data)
    progress = Progress()
    receipt = await storage.upload_file(up, f"{folder}/big.bin", source, progress)
    assert receipt.size == len(data) and receipt.resumed_from == 0, receipt
    assert len(receipt.checksum) == 64 and int(receipt.checksum, 16) >= 0
    progress.check_complete(len(data))
    assert len(progress.reports) >= 2, progress.reports
    ok("storage-upload")

    target = os.path.join(workdir, "downloaded.bin")
    progress = Progress()
    down = await storage.download_file(bare, f"{folder}/big.bin", target, progress)
    with open(target, "rb") as f:
        assert f.read() == data, "downloaded bytes differ"
    assert down.size == len(data) and down.checksum == receipt.checksum, (down, receipt)
    assert down.entry.kind == StorageEntryKind.FILE and down.entry.size == len(data)
    progress.check_complete(len(data))
    ok("storage-download")

    try:  # a single-use grant, used again
        await storage.upload_file(up, f"{folder}/big.bin", source)
        raise AssertionError("a used grant was accepted again")
    except FluxonError.PermissionDenied as e:
        assert "already used" in str(e), str(e)
    read = await grant(StorageOp.READ_FILE, "other.bin")
    try:  # a read grant, used for a write
        await storage.upload_file(read, f"{folder}/other.bin", source)
        raise AssertionError("a read grant allowed a write")
    except FluxonError.PermissionDenied as e:
        assert "write_file" in str(e), str(e)
    forged = await grant(StorageOp.WRITE_FILE, "forged.bin")
    forged.path = f"{folder}/elsewhere.bin"
    try:  # an altered grant
        await storage.upload_file(forged, f"{folder}/elsewhere.bin", source)
        raise AssertionError("an altered grant was accepted")
    except FluxonError.PermissionDenied as e:
        assert "signature" in str(e), str(e)
    capped = await grant(StorageOp.WRITE_FILE, "capped.bin", max_bytes=1024)
    try:  # larger than the grant's cap
        await storage.upload_file(capped, f"{folder}/capped.bin", source)
        raise AssertionError("an upload over the cap was accepted")
    except FluxonError.ResourceExhausted:
        pass
    try:  # no such local file: nothing is sent
        await storage.upload_file(await grant(StorageOp.WRITE_FILE, "x.bin"), f"{folder}/x.bin",
                                  os.path.join(workdir, "missing.bin"))
        raise AssertionError("a missing local file uploaded")
    except FluxonError.InvalidArgument:
        pass
    ok("storage-refused")

    small = await storage.upload_bytes(await grant(StorageOp.WRITE_FILE, "small.txt"),
                                       f"{folder}/small.txt", b"hello storage")
    assert small.size == 13
    entry = await storage.stat(await grant(StorageOp.STAT, "small.txt"), f"{folder}/small.txt")
    assert entry.kind == StorageEntryKind.FILE and entry.size == 13 and entry.modified_ms > 0
    await storage.move_item(await grant(StorageOp.MOVE, "small.txt", dest_path="moved.txt"),
                            path=f"{folder}/small.txt", dest_path=f"{folder}/moved.txt")
    tree = await storage.read_tree(await grant(StorageOp.READ_TREE), folder)
    assert [(e.name, e.kind, e.size) for e in tree] == [
        ("big.bin", StorageEntryKind.FILE, len(data)),
        ("moved.txt", StorageEntryKind.FILE, 13),
    ], tree
    await storage.delete_item(await grant(StorageOp.DELETE_ITEM, "moved.txt"), f"{folder}/moved.txt")
    try:
        await storage.stat(await grant(StorageOp.STAT, "moved.txt"), f"{folder}/moved.txt")
        raise AssertionError("a deleted file is still there")
    except FluxonError.NotFound:
        pass
    ok("storage-ops")

    # Raising from the progress callback stops a transfer: no partial download is left, and a
    # stopped upload commits nothing.
    stopped = os.path.join(workdir, "stopped.bin")
    try:
        await storage.download_file(await grant(StorageOp.READ_FILE, "big.bin"), f"{folder}/big.bin",
                                    stopped, Progress(stop_after=1))
        raise AssertionError("a stopped download completed")
    except FluxonError.Cancelled as e:
        assert "stopped by the test" in str(e), str(e)
    assert sorted(os.listdir(workdir)) == ["downloaded.bin", "source.bin"], os.listdir(workdir)
    try:
        await storage.upload_file(await grant(StorageOp.WRITE_FILE, "half.bin"), f"{folder}/half.bin",
                                  source, Progress(stop_after=1))
        raise AssertionError("a stopped upload completed")
    except FluxonError.Cancelled:
        pass
    try:
        await storage.stat(await grant(StorageOp.STAT, "half.bin"), f"{folder}/half.bin")
        raise AssertionError("a stopped upload was committed")
    except FluxonError.NotFound:
        pass
    # A resumable upload, stopped, then resumed with a second grant for the same upload id.
    first = await grant(StorageOp.WRITE_FILE, "resumed.bin", resumable=True)
    try:
        await storage.upload_file(first, f"{folder}/resumed.bin", source, Progress(stop_after=1))
        raise AssertionError("a stopped upload completed")
    except FluxonError.Cancelled:
        pass
    again = await grant(StorageOp.WRITE_FILE, "resumed.bin", resumable=True, upload_id=first.upload_id)
    resumed = await storage.upload_file(again, f"{folder}/resumed.bin", source, None, True)
    assert resumed.size == len(data) and resumed.checksum == receipt.checksum, resumed
    assert 0 <= resumed.resumed_from <= len(data), resumed
    print(f"resumed upload continued from byte {resumed.resumed_from} of {len(data)}", flush=True)
    ok("storage-cancel")


async def main(address, cert):
    # Reverse-call handlers are async Python called from Rust threads: tell each generated
    # module which event loop runs them.
    loop = asyncio.get_running_loop()
    fluxon.uniffi_set_event_loop(loop)
    school_module.uniffi_set_event_loop(loop)
    trust = Trust.CERTIFICATE_FILE(path=cert)
    events = Events()
    client = await FluxonClient.connect(address, trust, None, [school_events_service(events)])
    school = SchoolClient(client)
    assert client.is_connected()
    assert not client.is_logged_in()
    session = client.session()
    assert len(session.id) == 32 and len(session.token) > 0
    ok("connect")

    try:
        await school.me()
        raise AssertionError("me() without login succeeded")
    except FluxonError.Unauthenticated as e:
        assert "log" in str(e).lower(), str(e)
    ok("login-required-before-login")

    signup = await school.signup(
        SignupRequest(username="ada", password="secret", role=Role.TEACHER)
    )
    assert signup.user_id > 0
    assert client.user_id() == signup.user_id and client.is_logged_in()
    ok("signup")

    try:
        await school.signup(SignupRequest(username="ada", password="x", role=Role.STUDENT))
        raise AssertionError("duplicate signup succeeded")
    except FluxonError.AlreadyExists as e:
        assert "ada" in str(e), str(e)
    except FluxonError as e:
        raise AssertionError(f"wrong error type {type(e)}")
    ok("signup-duplicate")

    try:
        await school.login(LoginRequest(username="ada", password="wrong"))
        raise AssertionError("login with a wrong password succeeded")
    except FluxonError.Unauthenticated:
        pass
    ok("login-wrong-password")

    login = await school.login(LoginRequest(username="ada", password="secret"))
    assert login.user_id == signup.user_id and login.role == Role.TEACHER, login
    ok("login")

    when = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc)
    profile = Profile(
        user_id=0,
        display_name="Ada Lovelace",
        role=Role.TEACHER,
        nickname=None,
        avatar=bytes([0, 1, 2, 255]),
        tags=["math", "engines"],
        address=Address(city="London", street="St James's Square"),
        previous_addresses=[Address(city="Somerset", street=None)],
        updated_at=when,
        score=9.5,
        verified=True,
        age=36,
        counters={"visits": 3},
        past_roles=[Role.STUDENT, Role.TEACHER],
    )
    stored = await school.update_profile(profile)
    assert stored.user_id == signup.user_id
    assert stored.display_name == "Ada Lovelace" and stored.nickname is None
    assert stored.avatar == bytes([0, 1, 2, 255])
    assert stored.tags == ["math", "engines"]
    assert stored.address == Address(city="London", street="St James's Square")
    assert stored.previous_addresses == [Address(city="Somerset", street=None)]
    assert stored.updated_at.timestamp() == 1_700_000_000, stored.updated_at
    assert stored.score == 9.5 and stored.verified and stored.age == 36
    assert stored.counters == {"visits": 3, "updates": 1}, stored.counters
    assert stored.past_roles == [Role.STUDENT, Role.TEACHER]
    ok("profile-round-trip")

    me = await school.me()
    assert me == stored, (me, stored)
    ok("me")

    replies = await asyncio.gather(
        *[school.slow(SlowRequest(millis=200, text=f"call {i}")) for i in range(8)]
    )
    assert [r.text for r in replies] == [f"call {i}" for i in range(8)]
    ok("concurrent")

    reply = await school.broadcast(BroadcastRequest(text="hello"))
    assert reply.answer == "python got hello", reply
    assert events.seen == ["hello"]
    try:
        await school.broadcast(BroadcastRequest(text="refuse"))
        raise AssertionError("a refused reverse call succeeded")
    except FluxonError.PermissionDenied as e:
        assert "refuses" in str(e), str(e)
    ok("reverse")

    task = asyncio.create_task(school.slow(SlowRequest(millis=10_000, text="never")))
    await asyncio.sleep(0.2)
    task.cancel()
    try:
        await task
        raise AssertionError("cancelled task completed")
    except asyncio.CancelledError:
        pass
    assert client.is_connected()
    after = await school.slow(SlowRequest(millis=1, text="after cancel"))
    assert after.text == "after cancel"
    try:
        await school.slow(
            SlowRequest(millis=5_000, text="late"), CallOptions(timeout_ms=100)
        )
        raise AssertionError("a call past its deadline succeeded")
    except FluxonError.DeadlineExceeded:
        pass
    ok("cancel")

    # A server stream: each reply from next(), then None; as an async iterator; cancelled.
    ticks = await school.ticks(SlowRequest(millis=0, text="one two three"))
    words = []
    while (tick := await ticks.next()) is not None:
        words.append(tick.text)
    assert words == ["one", "two", "three"], words
    assert await ticks.next() is None, "nothing after the end"

    async def each(stream):
        while (reply := await stream.next()) is not None:
            yield reply

    assert [t.text async for t in each(await school.ticks(SlowRequest(text="a b")))] == ["a", "b"]
    slow = await school.ticks(SlowRequest(millis=10_000, text="never sent"))
    waiting = asyncio.create_task(slow.next())
    await asyncio.sleep(0.2)
    slow.cancel()
    assert await waiting is None, "a cancelled stream ends"
    ok("server-stream")

    tally = await school.tally()
    for word in ["one", "two", "three"]:
        await tally.send(SlowRequest(text=word))
    assert (await tally.finish()).text == "one two three"
    ok("client-stream")

    chat = await school.chat()
    for word in ["hi", "there"]:
        await chat.send(SlowRequest(text=word))
        assert (await chat.next()).text == word.upper()
    await chat.finish()
    assert await chat.next() is None, "the chat ends after the requests do"
    ok("bidi-stream")

    try:
        await client.call("school.School/NoSuchMethod", b"", None)
        raise AssertionError("unknown route succeeded")
    except FluxonError.NotFound:
        pass

    class Raw(RawReverseHandler):
        async def handle(self, route, request):
            return request

    raw = ReverseService.raw(["school.Raw/Echo"], Raw())
    assert raw.routes() == ["school.Raw/Echo"]
    ok("raw-call")

    with tempfile.TemporaryDirectory() as workdir:
        await storage_checks(school, client, signup.user_id, workdir)

    token = client.session().token
    session_id = client.session().id
    client.disconnect()
    resumed = await FluxonClient.connect(
        address, trust, ConnectOptions(resume_token=token), []
    )
    assert resumed.session().id == session_id
    assert resumed.session().resumed
    assert resumed.user_id() == signup.user_id
    me_again = await SchoolClient(resumed).me()
    assert me_again.display_name == "Ada Lovelace"
    ok("resume")

    try:
        await FluxonClient.connect(address, Trust.FINGERPRINT(sha256="00" * 32), None, [])
        raise AssertionError("a wrong fingerprint connected")
    except FluxonError.Unavailable:
        pass
    try:
        await FluxonClient.connect(address, Trust.CERTIFICATE_FILE(path="/nonexistent.pem"), None, [])
        raise AssertionError("a missing certificate file connected")
    except FluxonError.InvalidConfig:
        pass
    ok("bad-trust")

    resumed.disconnect()
    try:
        await SchoolClient(resumed).me()
        raise AssertionError("a closed client still calls")
    except (FluxonError.Cancelled, FluxonError.Unavailable):
        pass
    ok("close")


if __name__ == "__main__":
    # The interpreter's own teardown follows: the library's runtime threads stop calling into
    # Python before it starts (exit_in_flight.py tests it with work still in flight).
    asyncio.run(main(sys.argv[1], sys.argv[2]))
