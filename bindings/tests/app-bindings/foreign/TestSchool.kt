// The school client in Kotlin/JVM against a live Fluxon server.
// Usage: java ... TestSchoolKt ADDRESS CERT_PEM_PATH. Prints `ok <step>` per check passed;
// any failed check throws, which exits non-zero.

import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.flow
import kotlinx.coroutines.flow.map
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import uniffi.fluxon.CallOptions
import uniffi.fluxon.CloudStorage
import uniffi.fluxon.ConnectOptions
import uniffi.fluxon.FluxonClient
import uniffi.fluxon.FluxonException
import uniffi.fluxon.Grant
import uniffi.fluxon.RawReverseHandler
import uniffi.fluxon.ReverseService
import uniffi.fluxon.StorageEntryKind
import uniffi.fluxon.StorageOp
import uniffi.fluxon.TransferProgress
import uniffi.fluxon.Trust
import uniffi.school.Address
import uniffi.school.BroadcastRequest
import uniffi.school.GrantRequest
import uniffi.school.LoginRequest
import uniffi.school.PathRequest
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
import java.io.File
import java.nio.file.Files
import java.time.Instant
import java.util.Collections

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

/** Records every progress report; throws Cancelled once `stopAfter` bytes have moved. */
class Progress(private val stopAfter: ULong? = null) : TransferProgress {
    val reports: MutableList<Pair<ULong, ULong>> = Collections.synchronizedList(mutableListOf())

    override fun onProgress(done: ULong, total: ULong) {
        reports.add(done to total)
        if (stopAfter != null && done >= stopAfter) throw FluxonException.Cancelled("stopped by the test")
    }

    fun checkComplete(size: ULong) {
        check(reports.isNotEmpty()) { "no progress reported" }
        val dones = reports.map { it.first }
        check(dones == dones.sorted()) { "progress went backwards: $reports" }
        check(reports.all { it.second == size }) { "totals: $reports" }
        check(reports.last() == (size to size)) { "last report: $reports" }
    }
}

suspend fun storageChecks(school: SchoolClient, client: FluxonClient, userId: Long, dir: File) {
    val storage: CloudStorage = client.storage()
    val folder = "u$userId"
    suspend fun grant(
        op: StorageOp, path: String = "", destPath: String = "", maxBytes: ULong? = null,
        resumable: Boolean = false, uploadId: String = "",
    ): Grant {
        val reply = school.storageGrant(GrantRequest(op, path, destPath, maxBytes, resumable, uploadId))
        check(reply.grant != null && reply.issued > 0u) { "grant reply $reply" }
        return reply.grant!!
    }

    storage.createDirectory(grant(StorageOp.CREATE_DIRECTORY), folder)
    val up = grant(StorageOp.WRITE_FILE, "big.bin")
    check(up.op == StorageOp.WRITE_FILE && up.path == "$folder/big.bin") { "grant $up" }
    check(up.signature.size == 32 && up.nonce.size == 16 && up.sessionId.size == 16) { "grant bytes" }
    check(up.expiresAt > 0u && !up.reusable && up.uploadId.length == 32) { "grant fields $up" }
    val bare = school.readGrant(PathRequest("big.bin"))
    check(bare.op == StorageOp.READ_FILE && bare.path == "$folder/big.bin" && bare.uploadId == "") { "bare $bare" }
    ok("storage-grant")

    val data = ByteArray(600 * 1024 + 77).also { java.util.Random(7).nextBytes(it) }
    val size = data.size.toULong()
    val source = File(dir, "source.bin").apply { writeBytes(data) }
    val upProgress = Progress()
    val receipt = storage.uploadFile(up, "$folder/big.bin", source.path, upProgress)
    check(receipt.size == size && receipt.resumedFrom == 0uL) { "receipt $receipt" }
    check(receipt.checksum.length == 64 && receipt.checksum.all { it in "0123456789abcdef" }) { "checksum" }
    upProgress.checkComplete(size)
    check(upProgress.reports.size >= 2) { "reports ${upProgress.reports}" }
    ok("storage-upload")

    val target = File(dir, "downloaded.bin")
    val downProgress = Progress()
    val down = storage.downloadFile(bare, "$folder/big.bin", target.path, downProgress)
    check(target.readBytes().contentEquals(data)) { "downloaded bytes differ" }
    check(down.size == size && down.checksum == receipt.checksum) { "download $down vs $receipt" }
    check(down.entry.kind == StorageEntryKind.FILE && down.entry.size == size) { "entry ${down.entry}" }
    downProgress.checkComplete(size)
    ok("storage-download")

    val reused = expectThrows<FluxonException.PermissionDenied>("reused grant") {
        storage.uploadFile(up, "$folder/big.bin", source.path)
    }
    check(reused.message!!.contains("already used")) { "message: ${reused.message}" }
    val read = grant(StorageOp.READ_FILE, "other.bin")
    val wrongOp = expectThrows<FluxonException.PermissionDenied>("read grant for a write") {
        storage.uploadFile(read, "$folder/other.bin", source.path)
    }
    check(wrongOp.message!!.contains("write_file")) { "message: ${wrongOp.message}" }
    val forged = grant(StorageOp.WRITE_FILE, "forged.bin").copy(path = "$folder/elsewhere.bin")
    val bad = expectThrows<FluxonException.PermissionDenied>("altered grant") {
        storage.uploadFile(forged, "$folder/elsewhere.bin", source.path)
    }
    check(bad.message!!.contains("signature")) { "message: ${bad.message}" }
    expectThrows<FluxonException.ResourceExhausted>("over the cap") {
        storage.uploadFile(grant(StorageOp.WRITE_FILE, "capped.bin", maxBytes = 1024u), "$folder/capped.bin", source.path)
    }
    ok("storage-refused")

    val small = storage.uploadBytes(grant(StorageOp.WRITE_FILE, "small.txt"), "$folder/small.txt", "hello storage".toByteArray())
    check(small.size == 13uL) { "small $small" }
    val entry = storage.stat(grant(StorageOp.STAT, "small.txt"), "$folder/small.txt")
    check(entry.kind == StorageEntryKind.FILE && entry.size == 13uL && entry.modifiedMs > 0) { "stat $entry" }
    storage.moveItem(grant(StorageOp.MOVE, "small.txt", destPath = "moved.txt"), "$folder/small.txt", "$folder/moved.txt")
    val tree = storage.readTree(grant(StorageOp.READ_TREE), folder)
    check(tree.map { Triple(it.name, it.kind, it.size) } == listOf(
        Triple("big.bin", StorageEntryKind.FILE, size),
        Triple("moved.txt", StorageEntryKind.FILE, 13uL),
    )) { "tree $tree" }
    storage.deleteItem(grant(StorageOp.DELETE_ITEM, "moved.txt"), "$folder/moved.txt")
    expectThrows<FluxonException.NotFound>("stat after delete") {
        storage.stat(grant(StorageOp.STAT, "moved.txt"), "$folder/moved.txt")
    }
    ok("storage-ops")

    val stopped = File(dir, "stopped.bin")
    val stop = expectThrows<FluxonException.Cancelled>("stopped download") {
        storage.downloadFile(grant(StorageOp.READ_FILE, "big.bin"), "$folder/big.bin", stopped.path, Progress(1u))
    }
    check(stop.message!!.contains("stopped by the test")) { "message: ${stop.message}" }
    check(dir.list()!!.sorted() == listOf("downloaded.bin", "source.bin")) { "left: ${dir.list()!!.toList()}" }
    expectThrows<FluxonException.Cancelled>("stopped upload") {
        storage.uploadFile(grant(StorageOp.WRITE_FILE, "half.bin"), "$folder/half.bin", source.path, Progress(1u))
    }
    expectThrows<FluxonException.NotFound>("stopped upload committed") {
        storage.stat(grant(StorageOp.STAT, "half.bin"), "$folder/half.bin")
    }
    // A coroutine cancelled mid-download drops the Rust future: nothing is left either.
    val started = CompletableDeferred<Unit>()
    val watcher = object : TransferProgress {
        override fun onProgress(done: ULong, total: ULong) {
            started.complete(Unit)
        }
    }
    val readGrant = grant(StorageOp.READ_FILE, "big.bin")
    coroutineScope {
        val job = launch { storage.downloadFile(readGrant, "$folder/big.bin", stopped.path, watcher) }
        started.await()
        job.cancel()
        job.join()
        check(job.isCancelled) { "download job not cancelled" }
    }
    check(dir.list()!!.sorted() == listOf("downloaded.bin", "source.bin")) { "left: ${dir.list()!!.toList()}" }
    val first = grant(StorageOp.WRITE_FILE, "resumed.bin", resumable = true)
    expectThrows<FluxonException.Cancelled>("stopped resumable upload") {
        storage.uploadFile(first, "$folder/resumed.bin", source.path, Progress(1u))
    }
    val again = grant(StorageOp.WRITE_FILE, "resumed.bin", resumable = true, uploadId = first.uploadId)
    val resumed = storage.uploadFile(again, "$folder/resumed.bin", source.path, null, true)
    check(resumed.size == size && resumed.checksum == receipt.checksum && resumed.resumedFrom <= size) { "resumed $resumed" }
    ok("storage-cancel")
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

    // A server stream: each reply from next(), then null; as a Flow; cancelled.
    val ticks = school.ticks(SlowRequest(0u, "one two three"))
    val words = mutableListOf<String>()
    while (true) {
        val tick = ticks.next() ?: break
        words.add(tick.text)
    }
    check(words == listOf("one", "two", "three")) { "stream $words" }
    check(ticks.next() == null) { "nothing after the end" }
    val asFlow = school.ticks(SlowRequest(0u, "a b"))
    val flowed = flow { while (true) emit(asFlow.next() ?: break) }.map { it.text }.toList()
    check(flowed == listOf("a", "b")) { "flow $flowed" }
    val slowTicks = school.ticks(SlowRequest(10_000u, "never sent"))
    val waiting = async { slowTicks.next() }
    delay(200)
    slowTicks.cancel()
    check(waiting.await() == null) { "a cancelled stream ends" }
    ok("server-stream")

    val tally = school.tally()
    for (word in listOf("one", "two", "three")) tally.send(SlowRequest(0u, word))
    check(tally.finish().text == "one two three") { "tally" }
    ok("client-stream")

    val chat = school.chat()
    for (word in listOf("hi", "there")) {
        chat.send(SlowRequest(0u, word))
        check(chat.next()?.text == word.uppercase()) { "chat $word" }
    }
    chat.finish()
    check(chat.next() == null) { "the chat ends after the requests do" }
    ok("bidi-stream")

    expectThrows<FluxonException.NotFound>("unknown route") {
        client.call("school.School/NoSuchMethod", ByteArray(0), null)
    }
    val raw = ReverseService.raw(listOf("school.Raw/Echo"), RawEcho())
    check(raw.routes() == listOf("school.Raw/Echo")) { "raw routes" }
    ok("raw-call")

    val dir = Files.createTempDirectory("fluxon-storage").toFile()
    try {
        storageChecks(school, client, signup.userId, dir)
    } finally {
        dir.deleteRecursively()
    }

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
