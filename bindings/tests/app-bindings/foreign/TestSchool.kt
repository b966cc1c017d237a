// The school client in Kotlin/JVM against a live Fluxon server.
// Usage: java ... TestSchoolKt ADDRESS CERT_PEM_PATH. Prints `ok <step>` per check passed;
// any failed check throws, which exits non-zero.

import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import uniffi.fluxon.CallOptions
import uniffi.fluxon.ConnectOptions
import uniffi.fluxon.FluxonClient
import uniffi.fluxon.FluxonException
import uniffi.fluxon.RawReverseHandler
import uniffi.fluxon.ReverseService
import uniffi.fluxon.Trust
import uniffi.school.Address
import uniffi.school.BroadcastRequest
import uniffi.school.LoginRequest
import uniffi.school.Notice
import uniffi.school.NoticeAck
import uniffi.school.Profile
import uniffi.school.Role
import uniffi.school.SchoolClient
import uniffi.school.SchoolEventsException
import uniffi.school.SchoolEventsHandler
import uniffi.school.SignupRequest
import uniffi.school.SlowRequest
import uniffi.school.schoolEventsService
import java.time.Instant

fun ok(step: String) = println("ok $step")

fun check(condition: Boolean, what: () -> String) {
    if (!condition) throw AssertionError(what())
}

inline fun <reified E : Throwable> expectThrows(what: String, block: () -> Unit): E {
    try {
        block()
    } catch (e: Throwable) {
        if (e is E) return e
        throw AssertionError("$what: expected ${E::class.simpleName}, got $e")
    }
    throw AssertionError("$what: succeeded")
}

class Events : SchoolEventsHandler {
    val seen = mutableListOf<String>()

    override suspend fun notify(request: Notice): NoticeAck {
        seen.add(request.text)
        check(request.sentAt != null) { "notice without sentAt" }
        if (request.text == "refuse") throw SchoolEventsException.PermissionDenied("this device refuses")
        delay(10)
        return NoticeAck(reply = "kotlin got ${request.text}")
    }
}

class RawEcho : RawReverseHandler {
    override suspend fun handle(route: String, request: ByteArray): ByteArray = request
}

fun main(args: Array<String>) = runBlocking {
    val address = args[0]
    val trust = Trust.CertificateFile(path = args[1])
    val events = Events()
    val client = FluxonClient.connect(address, trust, null, listOf(schoolEventsService(events)))
    val school = SchoolClient(client)
    check(client.isConnected() && !client.isLoggedIn()) { "fresh client state" }
    check(client.session().id.length == 32) { "session id" }
    ok("connect")

    val unauth = expectThrows<FluxonException.Unauthenticated>("me before login") { school.me() }
    check(unauth.message!!.contains("log", ignoreCase = true)) { "message: ${unauth.message}" }
    ok("login-required-before-login")

    val signup = school.signup(SignupRequest("grace", "secret", Role.TEACHER))
    check(signup.userId > 0 && client.userId() == signup.userId && client.isLoggedIn()) { "signup $signup" }
    ok("signup")

    val dup = expectThrows<FluxonException.AlreadyExists>("duplicate signup") {
        school.signup(SignupRequest("grace", "x", Role.STUDENT))
    }
    check(dup.message!!.contains("grace")) { "message: ${dup.message}" }
    ok("signup-duplicate")

    expectThrows<FluxonException.Unauthenticated>("wrong password") {
        school.login(LoginRequest("grace", "wrong"))
    }
    ok("login-wrong-password")

    val login = school.login(LoginRequest("grace", "secret"))
    check(login.userId == signup.userId && login.role == Role.TEACHER) { "login $login" }
    ok("login")

    val profile = Profile(
        userId = 0,
        displayName = "Grace Hopper",
        role = Role.TEACHER,
        nickname = null,
        avatar = byteArrayOf(0, 1, 2, -1),
        tags = listOf("cobol", "navy"),
        address = Address("Arlington", "Main St"),
        previousAddresses = listOf(Address("New York", null)),
        updatedAt = Instant.parse("2024-05-01T12:00:00Z"),
        score = 9.5,
        verified = true,
        age = 85u,
        counters = mapOf("visits" to 3L),
        pastRoles = listOf(Role.STUDENT, Role.TEACHER),
    )
    val stored = school.updateProfile(profile)
    check(stored.userId == signup.userId && stored.displayName == "Grace Hopper" && stored.nickname == null) { "$stored" }
    check(stored.avatar.contentEquals(byteArrayOf(0, 1, 2, -1))) { "avatar" }
    check(stored.tags == listOf("cobol", "navy")) { "tags" }
    check(stored.address == Address("Arlington", "Main St")) { "address" }
    check(stored.previousAddresses == listOf(Address("New York", null))) { "previous" }
    check(stored.updatedAt == Instant.ofEpochSecond(1_700_000_000)) { "updatedAt ${stored.updatedAt}" }
    check(stored.score == 9.5 && stored.verified && stored.age == 85u) { "scalars" }
    check(stored.counters == mapOf("visits" to 3L, "updates" to 1L)) { "counters ${stored.counters}" }
    check(stored.pastRoles == listOf(Role.STUDENT, Role.TEACHER)) { "pastRoles" }
    ok("profile-round-trip")

    val me = school.me()
    check(me.displayName == stored.displayName && me.avatar.contentEquals(stored.avatar) && me.counters == stored.counters) { "me $me" }
    ok("me")

    val replies = coroutineScope {
        (0 until 8).map { i -> async { school.slow(SlowRequest(200u, "call $i")) } }.awaitAll()
    }
    check(replies.map { it.text } == (0 until 8).map { "call $it" }) { "concurrent $replies" }
    ok("concurrent")

    val reply = school.broadcast(BroadcastRequest("hello"))
    check(reply.answer == "kotlin got hello") { "broadcast $reply" }
    check(events.seen == listOf("hello")) { "seen ${events.seen}" }
    val refused = expectThrows<FluxonException.PermissionDenied>("refused reverse call") {
        school.broadcast(BroadcastRequest("refuse"))
    }
    check(refused.message!!.contains("refuses")) { "message: ${refused.message}" }
    ok("reverse")

    val job = launch { school.slow(SlowRequest(10_000u, "never")) }
    delay(200)
    job.cancel()
    job.join()
    check(job.isCancelled) { "job not cancelled" }
    check(client.isConnected()) { "connection lost after cancel" }
    check(school.slow(SlowRequest(1u, "after cancel")).text == "after cancel") { "call after cancel" }
    expectThrows<FluxonException.DeadlineExceeded>("deadline") {
        school.slow(SlowRequest(5_000u, "late"), CallOptions(timeoutMs = 100u))
    }
    ok("cancel")

    expectThrows<FluxonException.NotFound>("unknown route") {
        client.call("school.School/NoSuchMethod", ByteArray(0), null)
    }
    val raw = ReverseService.raw(listOf("school.Raw/Echo"), RawEcho())
    check(raw.routes() == listOf("school.Raw/Echo")) { "raw routes" }
    ok("raw-call")

    val token = client.session().token
    val sessionId = client.session().id
    client.disconnect()
    val resumed = FluxonClient.connect(address, trust, ConnectOptions(resumeToken = token), listOf())
    check(resumed.session().id == sessionId && resumed.session().resumed) { "resume ${resumed.session()}" }
    check(resumed.userId() == signup.userId) { "resumed login" }
    check(SchoolClient(resumed).me().displayName == "Grace Hopper") { "me after resume" }
    ok("resume")

    expectThrows<FluxonException.Unavailable>("wrong fingerprint") {
        FluxonClient.connect(address, Trust.Fingerprint("00".repeat(32)), null, listOf())
    }
    expectThrows<FluxonException.InvalidConfig>("missing certificate") {
        FluxonClient.connect(address, Trust.CertificateFile("/nonexistent.pem"), null, listOf())
    }
    ok("bad-trust")

    resumed.disconnect()
    val closed = expectThrows<FluxonException>("call after close") { SchoolClient(resumed).me() }
    check(closed is FluxonException.Cancelled || closed is FluxonException.Unavailable) { "closed: $closed" }
    ok("close")
}
