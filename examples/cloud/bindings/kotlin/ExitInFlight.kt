// Leaves the JVM while an upload to the cloud example (with a Kotlin progress callback) is in
// flight, as a careless program would.
// Usage: java ... cloudexit.ExitInFlightKt ADDRESS CERT_PEM_PATH WORKDIR MODE, where MODE is
// `return` (main returns; the upload runs on a daemon thread) or `exit` (exitProcess(0)). The
// JVM must exit with status 0; the server must record nothing of the upload.
package cloudexit

import kotlinx.coroutines.DelicateCoroutinesApi
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.GlobalScope
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import uniffi.cloud.CloudClient
import uniffi.cloud.CreateOwnerRequest
import uniffi.cloud.Credentials
import uniffi.cloud.WriteFileRequest
import uniffi.fluxon.FluxonClient
import uniffi.fluxon.TransferProgress
import uniffi.fluxon.Trust
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

@OptIn(DelicateCoroutinesApi::class)
fun main(args: Array<String>) {
    val (address, cert, workdir, mode) = args
    val progress = Counting()
    val upload = runBlocking {
        val client = FluxonClient.connect(address, Trust.CertificateFile(path = cert), null, listOf())
        val cloud = CloudClient(client)
        val pid = ProcessHandle.current().pid()
        cloud.signup(Credentials(username = "ktexit$pid-$mode", password = "a long password"))
        val owner = cloud.createOwner(CreateOwnerRequest())
        val storage = client.storage()
        storage.createDirectory(owner.grant!!, owner.storagePath)
        val size = 900L shl 20
        val write = cloud.writeFile(WriteFileRequest(root = owner.root, path = "big.bin", size = size))
        // A sparse 900 MiB file (within the default quota): far more than can move before main
        // ends, and no disk used here.
        val source = File(workdir, "big-$pid.bin")
        RandomAccessFile(source, "rw").use { it.setLength(size) }
        source.deleteOnExit()
        val job = GlobalScope.launch(Dispatchers.IO) {
            storage.uploadFile(write.grant!!, write.storagePath, source.path, progress, false)
        }
        delay(300)
        job
    }
    check(upload.isActive) { "the upload finished before main ended" }
    check(progress.reports.get() > 0) { "no progress reported" }
    println("leaving with the upload in flight after ${progress.reports.get()} progress reports ($mode)")
    if (mode == "exit") exitProcess(0)
}
