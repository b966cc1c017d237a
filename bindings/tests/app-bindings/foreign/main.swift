// The school client in Swift against a live Fluxon server.
// Usage: school-test ADDRESS CERT_PEM_PATH. Prints `ok <step>` per check passed; a failed check
// exits non-zero. Compiled together with the generated fluxon.swift and school.swift.

import Foundation

func ok(_ step: String) {
    print("ok \(step)")
    fflush(stdout)
}

func check(_ condition: Bool, _ what: @autoclosure () -> String) {
    if !condition {
        FileHandle.standardError.write("check failed: \(what())\n".data(using: .utf8)!)
        exit(1)
    }
}

/// Runs `body`, which must throw an error `matches` accepts.
func expectError(_ what: String, _ matches: (Error) -> Bool, _ body: () async throws -> Void) async {
    do {
        try await body()
    } catch {
        check(matches(error), "\(what): unexpected error \(error)")
        return
    }
    check(false, "\(what): succeeded")
}

final class Events: SchoolEventsHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var _seen: [String] = []
    var seen: [String] { lock.lock(); defer { lock.unlock() }; return _seen }

    func notify(request: Notice) async throws -> NoticeAck {
        lock.lock(); _seen.append(request.text); lock.unlock()
        check(request.sentAt != nil, "notice without sentAt")
        if request.text == "refuse" {
            throw SchoolEventsError.PermissionDenied(detail: "this device refuses")
        }
        try await Task.sleep(nanoseconds: 10_000_000)
        return NoticeAck(reply: "swift got \(request.text)")
    }
}

final class RawEcho: RawReverseHandler, @unchecked Sendable {
    func handle(route: String, request: Data) async throws -> Data { request }
}

/// Records every progress report; throws Cancelled once `stopAfter` bytes have moved.
final class Progress: TransferProgress, @unchecked Sendable {
    private let lock = NSLock()
    private var _reports: [(UInt64, UInt64)] = []
    private let stopAfter: UInt64?
    var reports: [(UInt64, UInt64)] { lock.lock(); defer { lock.unlock() }; return _reports }

    init(stopAfter: UInt64? = nil) { self.stopAfter = stopAfter }

    func onProgress(done: UInt64, total: UInt64) throws {
        lock.lock(); _reports.append((done, total)); lock.unlock()
        if let stop = stopAfter, done >= stop {
            throw FluxonError.Cancelled(detail: "stopped by the test")
        }
    }

    func checkComplete(_ size: UInt64) {
        let r = reports
        check(!r.isEmpty, "no progress reported")
        let dones = r.map { $0.0 }
        check(dones == dones.sorted(), "progress went backwards: \(r)")
        check(r.allSatisfy { $0.1 == size }, "totals: \(r)")
        check(r.last! == (size, size), "last report: \(r)")
    }
}

func isPermissionDenied(_ needle: String) -> (Error) -> Bool {
    return { error in
        if case FluxonError.PermissionDenied(let detail) = error { return detail.contains(needle) }
        return false
    }
}

func storageChecks(_ school: SchoolClient, _ client: FluxonClient, _ userId: Int64, _ dir: URL) async throws {
    let storage = client.storage()
    let folder = "u\(userId)"
    func grant(_ op: StorageOp, _ path: String = "", destPath: String = "", maxBytes: UInt64? = nil,
               resumable: Bool = false, uploadId: String = "") async throws -> Grant {
        let reply = try await school.storageGrant(request: GrantRequest(
            op: op, path: path, destPath: destPath, maxBytes: maxBytes, resumable: resumable, uploadId: uploadId))
        check(reply.grant != nil && reply.issued > 0, "grant reply \(reply)")
        return reply.grant!
    }

    try await storage.createDirectory(grant: try await grant(.createDirectory), path: folder)
    let up = try await grant(.writeFile, "big.bin")
    check(up.op == .writeFile && up.path == "\(folder)/big.bin", "grant \(up)")
    check(up.signature.count == 32 && up.nonce.count == 16 && up.sessionId.count == 16, "grant bytes")
    check(up.expiresAt > 0 && !up.reusable && up.uploadId.count == 32, "grant fields \(up)")
    let bare = try await school.readGrant(request: PathRequest(path: "big.bin"))
    check(bare.op == .readFile && bare.path == "\(folder)/big.bin" && bare.uploadId == "", "bare \(bare)")
    ok("storage-grant")

    var seed: UInt32 = 7
    let data = Data((0..<(500 * 1024 + 91)).map { _ -> UInt8 in
        seed = seed &* 1_664_525 &+ 1_013_904_223
        return UInt8(truncatingIfNeeded: seed >> 24)
    })
    let size = UInt64(data.count)
    let source = dir.appendingPathComponent("source.bin")
    try data.write(to: source)
    let upProgress = Progress()
    let receipt = try await storage.uploadFile(
        grant: up, path: "\(folder)/big.bin", localPath: source.path, progress: upProgress)
    check(receipt.size == size && receipt.resumedFrom == 0, "receipt \(receipt)")
    check(receipt.checksum.count == 64 && receipt.checksum.allSatisfy { "0123456789abcdef".contains($0) }, "checksum")
    upProgress.checkComplete(size)
    check(upProgress.reports.count >= 2, "reports \(upProgress.reports)")
    ok("storage-upload")

    let target = dir.appendingPathComponent("downloaded.bin")
    let downProgress = Progress()
    let down = try await storage.downloadFile(
        grant: bare, path: "\(folder)/big.bin", localPath: target.path, progress: downProgress)
    check(try Data(contentsOf: target) == data, "downloaded bytes differ")
    check(down.size == size && down.checksum == receipt.checksum, "download \(down) vs \(receipt)")
    check(down.entry.kind == .file && down.entry.size == size, "entry \(down.entry)")
    downProgress.checkComplete(size)
    ok("storage-download")

    await expectError("reused grant", isPermissionDenied("already used")) {
        _ = try await storage.uploadFile(grant: up, path: "\(folder)/big.bin", localPath: source.path)
    }
    let read = try await grant(.readFile, "other.bin")
    await expectError("read grant for a write", isPermissionDenied("write_file")) {
        _ = try await storage.uploadFile(grant: read, path: "\(folder)/other.bin", localPath: source.path)
    }
    var forged = try await grant(.writeFile, "forged.bin")
    forged.path = "\(folder)/elsewhere.bin"
    let altered = forged
    await expectError("altered grant", isPermissionDenied("signature")) {
        _ = try await storage.uploadFile(grant: altered, path: "\(folder)/elsewhere.bin", localPath: source.path)
    }
    let capped = try await grant(.writeFile, "capped.bin", maxBytes: 1024)
    await expectError("over the cap", { if case FluxonError.ResourceExhausted = $0 { return true }; return false }) {
        _ = try await storage.uploadFile(grant: capped, path: "\(folder)/capped.bin", localPath: source.path)
    }
    ok("storage-refused")

    let small = try await storage.uploadBytes(
        grant: try await grant(.writeFile, "small.txt"), path: "\(folder)/small.txt", data: Data("hello storage".utf8))
    check(small.size == 13, "small \(small)")
    let entry = try await storage.stat(grant: try await grant(.stat, "small.txt"), path: "\(folder)/small.txt")
    check(entry.kind == .file && entry.size == 13 && entry.modifiedMs > 0, "stat \(entry)")
    try await storage.moveItem(
        grant: try await grant(.move, "small.txt", destPath: "moved.txt"), path: "\(folder)/small.txt", destPath: "\(folder)/moved.txt")
    let tree = try await storage.readTree(grant: try await grant(.readTree), path: folder)
    check(tree.map { $0.name } == ["big.bin", "moved.txt"], "tree \(tree)")
    check(tree.map { $0.size } == [size, 13] && tree.allSatisfy { $0.kind == .file }, "tree \(tree)")
    try await storage.deleteItem(grant: try await grant(.deleteItem, "moved.txt"), path: "\(folder)/moved.txt")
    let statGrant = try await grant(.stat, "moved.txt")
    await expectError("stat after delete", { if case FluxonError.NotFound = $0 { return true }; return false }) {
        _ = try await storage.stat(grant: statGrant, path: "\(folder)/moved.txt")
    }
    ok("storage-ops")

    // Task cancellation does not reach Rust in uniffi 0.32's Swift bindings; raising from the
    // progress callback does stop a transfer.
    let stopped = dir.appendingPathComponent("stopped.bin")
    let readAgain = try await grant(.readFile, "big.bin")
    await expectError("stopped download", {
        if case FluxonError.Cancelled(let detail) = $0 { return detail.contains("stopped by the test") }
        return false
    }) {
        _ = try await storage.downloadFile(
            grant: readAgain, path: "\(folder)/big.bin", localPath: stopped.path, progress: Progress(stopAfter: 1))
    }
    let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
    check(left == ["downloaded.bin", "source.bin"], "left: \(left)")
    let half = try await grant(.writeFile, "half.bin")
    await expectError("stopped upload", { if case FluxonError.Cancelled = $0 { return true }; return false }) {
        _ = try await storage.uploadFile(
            grant: half, path: "\(folder)/half.bin", localPath: source.path, progress: Progress(stopAfter: 1))
    }
    let halfStat = try await grant(.stat, "half.bin")
    await expectError("stopped upload committed", { if case FluxonError.NotFound = $0 { return true }; return false }) {
        _ = try await storage.stat(grant: halfStat, path: "\(folder)/half.bin")
    }
    let first = try await grant(.writeFile, "resumed.bin", resumable: true)
    await expectError("stopped resumable upload", { if case FluxonError.Cancelled = $0 { return true }; return false }) {
        _ = try await storage.uploadFile(
            grant: first, path: "\(folder)/resumed.bin", localPath: source.path, progress: Progress(stopAfter: 1))
    }
    let again = try await grant(.writeFile, "resumed.bin", resumable: true, uploadId: first.uploadId)
    let resumed = try await storage.uploadFile(
        grant: again, path: "\(folder)/resumed.bin", localPath: source.path, progress: nil, resume: true)
    check(resumed.size == size && resumed.checksum == receipt.checksum && resumed.resumedFrom <= size, "resumed \(resumed)")
    ok("storage-cancel")
}

let address = CommandLine.arguments[1]
let trust = Trust.certificateFile(path: CommandLine.arguments[2])
let events = Events()

do {
    let client = try await FluxonClient.connect(
        address: address, trust: trust, options: nil, reverse: [schoolEventsService(handler: events)])
    let school = SchoolClient(client: client)
    check(client.isConnected() && !client.isLoggedIn(), "fresh client state")
    check(client.session().id.count == 32, "session id")
    ok("connect")

    await expectError("me before login", { if case FluxonError.Unauthenticated = $0 { return true }; return false }) {
        _ = try await school.me()
    }
    ok("login-required-before-login")

    let signup = try await school.signup(request: SignupRequest(username: "linus", password: "secret", role: .teacher))
    check(signup.userId > 0 && client.userId() == signup.userId && client.isLoggedIn(), "signup \(signup)")
    ok("signup")

    await expectError("duplicate signup", {
        if case FluxonError.AlreadyExists(let detail) = $0 { return detail.contains("linus") }
        return false
    }) {
        _ = try await school.signup(request: SignupRequest(username: "linus", password: "x", role: .student))
    }
    ok("signup-duplicate")

    await expectError("wrong password", { if case FluxonError.Unauthenticated = $0 { return true }; return false }) {
        _ = try await school.login(request: LoginRequest(username: "linus", password: "wrong"))
    }
    ok("login-wrong-password")

    let login = try await school.login(request: LoginRequest(username: "linus", password: "secret"))
    check(login.userId == signup.userId && login.role == .teacher, "login \(login)")
    ok("login")

    let profile = Profile(
        userId: 0, displayName: "Linus", role: .teacher, nickname: nil,
        avatar: Data([0, 1, 2, 255]), tags: ["kernel", "git"],
        address: Address(city: "Portland", street: "Main St"),
        previousAddresses: [Address(city: "Helsinki", street: nil)],
        updatedAt: Date(timeIntervalSince1970: 1_714_564_800), score: 9.5, verified: true, age: 55,
        counters: ["visits": 3], pastRoles: [.student, .teacher])
    let stored = try await school.updateProfile(request: profile)
    check(stored.userId == signup.userId && stored.displayName == "Linus" && stored.nickname == nil, "\(stored)")
    check(stored.avatar == Data([0, 1, 2, 255]), "avatar")
    check(stored.tags == ["kernel", "git"], "tags")
    check(stored.address == Address(city: "Portland", street: "Main St"), "address")
    check(stored.previousAddresses == [Address(city: "Helsinki", street: nil)], "previous")
    check(stored.updatedAt == Date(timeIntervalSince1970: 1_700_000_000), "updatedAt \(String(describing: stored.updatedAt))")
    check(stored.score == 9.5 && stored.verified && stored.age == 55, "scalars")
    check(stored.counters == ["visits": 3, "updates": 1], "counters \(stored.counters)")
    check(stored.pastRoles == [.student, .teacher], "pastRoles")
    ok("profile-round-trip")

    let me = try await school.me()
    check(me == stored, "me \(me)")
    ok("me")

    let texts = try await withThrowingTaskGroup(of: (Int, String).self) { group -> [String] in
        for i in 0..<8 {
            group.addTask { (i, try await school.slow(request: SlowRequest(millis: 200, text: "call \(i)")).text) }
        }
        var out = [String](repeating: "", count: 8)
        for try await (i, text) in group { out[i] = text }
        return out
    }
    check(texts == (0..<8).map { "call \($0)" }, "concurrent \(texts)")
    ok("concurrent")

    let reply = try await school.broadcast(request: BroadcastRequest(text: "hello"))
    check(reply.answer == "swift got hello", "broadcast \(reply)")
    check(events.seen == ["hello"], "seen \(events.seen)")
    await expectError("refused reverse call", {
        if case FluxonError.PermissionDenied(let detail) = $0 { return detail.contains("refuses") }
        return false
    }) {
        _ = try await school.broadcast(request: BroadcastRequest(text: "refuse"))
    }
    ok("reverse")

    // uniffi 0.32's Swift bindings do not pass a Task's cancellation on to Rust: the call
    // runs to its end (bound it with `CallOptions(timeoutMs:)`). What must hold is that the
    // connection stays usable.
    let task = Task { try await school.slow(request: SlowRequest(millis: 500, text: "cancelled")) }
    try await Task.sleep(nanoseconds: 100_000_000)
    task.cancel()
    switch await task.result {
    case .success(let reply): print("cancelled Task completed anyway: \(reply.text)")
    case .failure(let error): print("cancelled Task failed: \(error)")
    }
    check(client.isConnected(), "connection lost after cancel")
    let after = try await school.slow(request: SlowRequest(millis: 1, text: "after cancel"))
    check(after.text == "after cancel", "call after cancel")
    await expectError("deadline", { if case FluxonError.DeadlineExceeded = $0 { return true }; return false }) {
        _ = try await school.slow(request: SlowRequest(millis: 5_000, text: "late"), options: CallOptions(timeoutMs: 100))
    }
    ok("cancel")

    // A server stream: each reply from next(), then nil; as an AsyncThrowingStream; cancelled.
    let ticks = try await school.ticks(request: SlowRequest(millis: 0, text: "one two three"))
    var words: [String] = []
    while let tick = try await ticks.next() {
        words.append(tick.text)
    }
    check(words == ["one", "two", "three"], "stream \(words)")
    let afterEnd = try await ticks.next()
    check(afterEnd == nil, "nothing after the end")
    let source = try await school.ticks(request: SlowRequest(millis: 0, text: "a b"))
    let sequence = AsyncThrowingStream<SlowReply, Error>(unfolding: { try await source.next() })
    var streamed: [String] = []
    for try await tick in sequence {
        streamed.append(tick.text)
    }
    check(streamed == ["a", "b"], "async sequence \(streamed)")
    let slowTicks = try await school.ticks(request: SlowRequest(millis: 10_000, text: "never sent"))
    slowTicks.cancel()
    let cancelled = try await slowTicks.next()
    check(cancelled == nil, "a cancelled stream ends")
    ok("server-stream")

    let tally = try await school.tally()
    for word in ["one", "two", "three"] {
        try await tally.send(request: SlowRequest(millis: 0, text: word))
    }
    let total = try await tally.finish()
    check(total.text == "one two three", "tally \(total.text)")
    ok("client-stream")

    let chat = try await school.chat()
    for word in ["hi", "there"] {
        try await chat.send(request: SlowRequest(millis: 0, text: word))
        let echoed = try await chat.next()
        check(echoed?.text == word.uppercased(), "chat \(word)")
    }
    await chat.finish()
    let ended = try await chat.next()
    check(ended == nil, "the chat ends after the requests do")
    ok("bidi-stream")

    await expectError("unknown route", { if case FluxonError.NotFound = $0 { return true }; return false }) {
        _ = try await client.call(route: "school.School/NoSuchMethod", request: Data(), options: nil)
    }
    let raw = ReverseService.raw(routes: ["school.Raw/Echo"], handler: RawEcho())
    check(raw.routes() == ["school.Raw/Echo"], "raw routes")
    ok("raw-call")

    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fluxon-storage-\(getpid())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    try await storageChecks(school, client, signup.userId, dir)

    let token = client.session().token
    let sessionId = client.session().id
    client.disconnect()
    let resumed = try await FluxonClient.connect(
        address: address, trust: trust, options: ConnectOptions(resumeToken: token), reverse: [])
    check(resumed.session().id == sessionId && resumed.session().resumed, "resume")
    check(resumed.userId() == signup.userId, "resumed login")
    check(try await SchoolClient(client: resumed).me().displayName == "Linus", "me after resume")
    ok("resume")

    await expectError("wrong fingerprint", { if case FluxonError.Unavailable = $0 { return true }; return false }) {
        _ = try await FluxonClient.connect(
            address: address, trust: .fingerprint(sha256: String(repeating: "00", count: 32)), options: nil, reverse: [])
    }
    await expectError("missing certificate", { if case FluxonError.InvalidConfig = $0 { return true }; return false }) {
        _ = try await FluxonClient.connect(
            address: address, trust: .certificateFile(path: "/nonexistent.pem"), options: nil, reverse: [])
    }
    ok("bad-trust")

    resumed.disconnect()
    await expectError("call after close", {
        switch $0 {
        case FluxonError.Cancelled, FluxonError.Unavailable: return true
        default: return false
        }
    }) {
        _ = try await SchoolClient(client: resumed).me()
    }
    ok("close")
} catch {
    FileHandle.standardError.write("unexpected error: \(error)\n".data(using: .utf8)!)
    exit(1)
}
