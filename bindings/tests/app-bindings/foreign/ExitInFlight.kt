// Leaves the JVM while an upload (with a Kotlin progress callback), a call and a reverse call
// (answered by a Kotlin handler) are in flight.
// Usage: java ... exitinflight.ExitInFlightKt ADDRESS CERT_PEM_PATH WORKDIR MODE, where MODE is
// `return` (main returns; the coroutines run on daemon threads) or `exit` (exitProcess(0)).
// The JVM must then exit with status 0, whatever the library's runtime threads are doing.
package exitinflight

import kotlinx.coroutines.DelicateCoroutinesApi
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.GlobalScope
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import uniffi.fluxon.FluxonClient
import uniffi.fluxon.StorageOp
import uniffi.fluxon.TransferProgress
import uniffi.fluxon.Trust
import uniffi.school.BroadcastRequest
import uniffi.school.GrantRequest
import uniffi.school.Notice
import uniffi.school.NoticeAck
import uniffi.school.Role
import uniffi.school.SchoolClient
import uniffi.school.SchoolEventsHandler
import uniffi.school.SignupRequest
import uniffi.school.SlowRequest
import uniffi.school.schoolEventsService
import java.io.File
import java.io.RandomAccessFile
import java.util.concurrent.atomic.AtomicLong
import kotlin.system.exitProcess

class Counting : TransferProgress {
    val reports = AtomicLong()

    override fun onProgress(done: ULong, total: ULong) {
        reports.incrementAndGet()
    }
}

/** Answers reverse calls, slowly. */
class SlowEvents : SchoolEventsHandler {
    val started = AtomicLong()

    override suspend fun notify(request: Notice): NoticeAck {
        started.incrementAndGet()
        delay(20_000)
        return NoticeAck(reply = "too late")
    }
}

@OptIn(DelicateCoroutinesApi::class)
fun main(args: Array<String>) {
    val (address, cert, workdir, mode) = args
    val progress = Counting()
    val events = SlowEvents()
    val jobs = runBlocking {
        val client = FluxonClient.connect(
            address, Trust.CertificateFile(path = cert), null, listOf(schoolEventsService(events)),
        )
        val school = SchoolClient(client)
        val pid = ProcessHandle.current().pid()
        val signup = school.signup(SignupRequest("exit$pid", "pw", Role.STUDENT))
        val storage = client.storage()
        val folder = "u${signup.userId}"
        suspend fun grant(op: StorageOp, path: String) =
            school.storageGrant(GrantRequest(op, path, "", null, false, "")).grant!!
        storage.createDirectory(grant(StorageOp.CREATE_DIRECTORY, ""), folder)
        val up = grant(StorageOp.WRITE_FILE, "big.bin")
        // A sparse 4 GiB file: far more than can move before main ends, and no disk used here.
        val source = File(workdir, "big-$pid.bin")
        RandomAccessFile(source, "rw").use { it.setLength(4L shl 30) }
        source.deleteOnExit()
        val upload = GlobalScope.launch(Dispatchers.IO) {
            storage.uploadFile(up, "$folder/big.bin", source.path, progress)
        }
        val call = GlobalScope.launch(Dispatchers.IO) {
            school.slow(SlowRequest(20_000u, "never answered"))
        }
        // The server calls back into `events` and waits for the answer.
        val broadcast = GlobalScope.launch(Dispatchers.IO) {
            school.broadcast(BroadcastRequest("at exit"))
        }
        delay(300)
        listOf(upload, call, broadcast)
    }
    check(jobs.all { it.isActive }) { "work finished before main ended: $jobs" }
    check(events.started.get() == 1L) { "the reverse call did not reach the handler" }
    check(progress.reports.get() > 0) { "no progress reported" }
    println("leaving with the upload in flight after ${progress.reports.get()} progress reports ($mode)")
    if (mode == "exit") exitProcess(0)
}
