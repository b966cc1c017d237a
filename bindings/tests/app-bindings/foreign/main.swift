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

    await expectError("unknown route", { if case FluxonError.NotFound = $0 { return true }; return false }) {
        _ = try await client.call(route: "school.School/NoSuchMethod", request: Data(), options: nil)
    }
    let raw = ReverseService.raw(routes: ["school.Raw/Echo"], handler: RawEcho())
    check(raw.routes() == ["school.Raw/Echo"], "raw routes")
    ok("raw-call")

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
