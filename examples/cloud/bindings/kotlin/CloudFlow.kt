// The cloud example's whole flow in Kotlin/JVM, against a live cloud server.
// Usage: java ... CloudFlowKt ADDRESS CERT_PEM_PATH WORKDIR. Prints `ok <step>` per check
// passed; any failed check throws, which exits non-zero.

import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import uniffi.cloud.CloudClient
import uniffi.cloud.CreateOwnerRequest
import uniffi.cloud.Credentials
import uniffi.cloud.PathRequest
import uniffi.cloud.WriteFileRequest
import uniffi.fluxon.CloudStorage
import uniffi.fluxon.FluxonClient
import uniffi.fluxon.FluxonException
import uniffi.fluxon.StorageEntryKind
import uniffi.fluxon.TransferProgress
import uniffi.fluxon.Trust
import java.io.File

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

/** Counts reports; throws `error` once `failAfter` bytes have moved. */
class Progress(private val failAfter: ULong? = null, private val error: Exception? = null) : TransferProgress {
    @Volatile var reports = 0

    override fun onProgress(done: ULong, total: ULong) {
        reports += 1
        if (failAfter != null && done >= failAfter) throw error!!
    }
}

/** The application's files under the root, checked against storage's, and the usage. */
suspend fun tree(cloud: CloudClient, storage: CloudStorage, root: Long): Pair<List<Pair<String, Long>>, Long> {
    val reply = cloud.readTree(PathRequest(root = root, path = ""))
    val listed = storage.readTree(reply.grant!!, reply.storagePath)
    val ours = reply.entries.filter { !it.directory }.map { it.path to it.size }.sortedBy { it.first }
    val theirs = listed.filter { it.kind == StorageEntryKind.FILE }
        .map { it.name to it.size.toLong() }.sortedBy { it.first }
    check(ours == theirs) { "the application's files $ours differ from storage's $theirs" }
    return ours to reply.usage!!.storageUsed
}

fun main(args: Array<String>) = runBlocking {
    val (address, cert, workdir) = args
    val client = FluxonClient.connect(address, Trust.CertificateFile(path = cert), null, listOf())
    val cloud = CloudClient(client)
    val storage = client.storage()
    ok("connect")

    val account = cloud.signup(Credentials(username = "kt${ProcessHandle.current().pid()}", password = "a long password"))
    check(account.userId > 0) { "user ${account.userId}" }
    ok("signup")

    val owner = cloud.createOwner(CreateOwnerRequest(storageLimit = 4L shl 20))
    storage.createDirectory(owner.grant!!, owner.storagePath)
    val root = owner.root
    val folder = cloud.createFolder(PathRequest(root = root, path = "docs"))
    storage.createDirectory(folder.grant!!, folder.storagePath)
    ok("owner-and-folder")

    val data = ByteArray(1 shl 20) { i -> ((i * 31 + i / 251) % 256).toByte() }
    val source = File(workdir, "data-kt.bin").apply { writeBytes(data) }
    val write = cloud.writeFile(WriteFileRequest(root = root, path = "docs/data.bin", size = data.size.toLong(),
        mimeType = "application/octet-stream"))
    val progress = Progress()
    val receipt = storage.uploadFile(write.grant!!, write.storagePath, source.path, progress, false)
    check(receipt.size == data.size.toULong() && progress.reports > 0) { "upload $receipt, ${progress.reports} reports" }
    ok("upload")
    val read = cloud.readFile(PathRequest(root = root, path = "docs/data.bin"))
    val target = File(workdir, "copy-kt.bin")
    val down = storage.downloadFile(read.grant!!, read.storagePath, target.path, null)
    check(down.checksum == receipt.checksum) { "checksums differ" }
    check(target.readBytes().contentEquals(data)) { "downloaded bytes differ" }
    ok("download")
    check(tree(cloud, storage, root) == (listOf("docs/data.bin" to data.size.toLong()) to data.size.toLong())) { "tree" }
    ok("tree")

    val quota = expectThrows<FluxonException.ResourceExhausted>("a write over the quota") {
        runBlocking { cloud.writeFile(WriteFileRequest(root = root, path = "docs/huge.bin", size = 8L shl 20, mimeType = "")) }
    }
    check(quota.message!!.contains("quota exceeded")) { "quota message: ${quota.message}" }
    ok("quota-refused")

    // Past the grant's cap: cut off by storage; nothing recorded or stored, reservation released.
    val liar = cloud.writeFile(WriteFileRequest(root = root, path = "docs/liar.bin", size = 1024, mimeType = ""))
    expectThrows<FluxonException.ResourceExhausted>("an upload past its cap") {
        runBlocking { storage.uploadBytes(liar.grant!!, liar.storagePath, data.copyOf(64 * 1024)) }
    }
    check(tree(cloud, storage, root) == (listOf("docs/data.bin" to data.size.toLong()) to data.size.toLong())) { "phantom" }
    expectThrows<FluxonException.NotFound>("the refused upload recorded") {
        runBlocking { cloud.readFile(PathRequest(root = root, path = "docs/liar.bin")) }
    }
    ok("no-phantom")

    // A progress callback that throws stops the upload; the error names the callback.
    val half = cloud.writeFile(WriteFileRequest(root = root, path = "docs/half.bin", size = data.size.toLong(), mimeType = ""))
    val raised = expectThrows<FluxonException.Internal>("an upload whose callback threw") {
        runBlocking {
            storage.uploadFile(half.grant!!, half.storagePath, source.path,
                Progress(1u, IllegalStateException("disk on fire")), false)
        }
    }
    check(raised.message!!.contains("callback") && raised.message!!.contains("disk on fire")) { "callback error: ${raised.message}" }
    check(tree(cloud, storage, root).first == listOf("docs/data.bin" to data.size.toLong())) { "half.bin recorded" }
    ok("callback-raises")

    val delete = cloud.deleteItem(PathRequest(root = root, path = "docs/data.bin"))
    storage.deleteItem(delete.grant!!, delete.storagePath)
    check(tree(cloud, storage, root).first.isEmpty()) { "the deleted file is still listed" }
    ok("delete")

    client.disconnect()
    delay(10)
    ok("close")
}
