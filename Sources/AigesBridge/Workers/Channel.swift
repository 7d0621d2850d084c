import CPythonShims
import Glibc
import Synchronization

/// One frame read from a channel; owns its body (malloc'd, freed when the last owner lets go).
final class ReceivedFrame: @unchecked Sendable {  // immutable after init
    let kind: FrameKind
    let id: UInt64
    let body: UnsafeMutableRawBufferPointer

    fileprivate init(kind: FrameKind, id: UInt64, body: UnsafeMutableRawBufferPointer) {
        self.kind = kind
        self.id = id
        self.body = body
    }

    /// A reader over the body (valid while this frame lives).
    var reader: FrameReader { FrameReader(kind: kind, id: id, body: UnsafeRawBufferPointer(body), owner: self) }

    deinit { free(body.baseAddress) }
}

/// One end of the socket between the plugin and a worker process: whole frames out (any thread,
/// one at a time), whole frames in (one reading thread), memfds alongside (`SCM_RIGHTS`).
///
/// Sends never raise SIGPIPE (a dead peer is an error result, not a signal to the loader).
final class FrameChannel: @unchecked Sendable {  // `sendLock` guards sending; receiving state is the reader thread's
    let descriptor: Int32
    private let sendLock = Mutex(())
    private var buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 16, alignment: 16)  // freed in deinit
    private let bufferSize = 1 << 16
    private var start = 0
    private var end = 0
    private var descriptors: [Int32] = []  // arrived with the bytes read so far, oldest first

    /// Takes ownership of `descriptor` (a connected stream socket), closed in deinit.
    init(descriptor: Int32) { self.descriptor = descriptor }

    /// Sends one frame, with `passing` (a descriptor, still the caller's) attached to its first byte.
    /// - Returns: false if the peer is gone.
    @discardableResult
    func send(_ frame: [UInt8], passing: Int32? = nil) -> Bool {
        frame.withUnsafeBytes { bytes in sendLock.withLock { _ in sendLocked(bytes, passing: passing) } }
    }

    private func sendLocked(_ bytes: UnsafeRawBufferPointer, passing: Int32?) -> Bool {
        var sent = 0
        var attach = passing
        while sent < bytes.count {
            let result = aiges_send_with_fd(
                descriptor, bytes.baseAddress.unsafelyUnwrapped + sent, bytes.count - sent, attach ?? -1)
            if result < 0 {
                if errno == EINTR { continue }
                return false
            }
            attach = nil
            sent += result
        }
        return true
    }

    /// The next whole frame; nil when the peer closed its end. Throws on a malformed frame.
    /// Only one thread reads.
    func receive() throws(WireError) -> ReceivedFrame? {
        while end - start < 16 {
            guard try fill() else { return nil }
        }
        let header = buffer + start
        let length = Int(UInt32(littleEndian: header.loadUnaligned(as: UInt32.self)))
        let rawKind = UInt16(littleEndian: header.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        let id = UInt64(littleEndian: header.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        guard let kind = FrameKind(rawValue: rawKind) else { throw WireError(what: "unknown frame kind \(rawKind)") }
        guard length <= Payload.frameLimit else { throw WireError(what: "a \(length)-byte frame") }
        start += 16
        guard let body = malloc(max(length, 1)) else {
            throw WireError(what: "out of memory for a \(length)-byte frame")
        }
        var copied = min(length, end - start)
        memcpy(body, buffer + start, copied)
        start += copied
        while copied < length {  // the rest straight into the body (large frames)
            let result = receiveBytes(into: body + copied, count: length - copied)
            if result < 0, errno == EINTR { continue }
            guard result > 0 else {
                free(body)
                return nil
            }
            copied += result
        }
        guard descriptors.count <= Self.descriptorLimit else {
            free(body)
            throw WireError(what: "\(descriptors.count) descriptors sent without their segment frames")
        }
        return ReceivedFrame(kind: kind, id: id, body: UnsafeMutableRawBufferPointer(start: body, count: length))
    }

    /// Whether a whole frame is already buffered (`receive` would not read the socket). Reader only.
    var hasBufferedFrame: Bool {
        guard end - start >= 16 else { return false }
        let length = Int(UInt32(littleEndian: (buffer + start).loadUnaligned(as: UInt32.self)))
        return end - start - 16 >= length
    }

    /// Before a `receive` that would block: busy-polls the socket for up to `nanoseconds`, so that
    /// an answer coming within that time is read without sleeping and being woken (the cost of a
    /// round trip between processes is mostly those wake-ups). Reader thread only.
    func spinForInput(nanoseconds: Int64) {
        guard !hasBufferedFrame else { return }
        _ = aiges_readable_within(descriptor, nanoseconds)
    }

    /// Descriptors may arrive ahead of their `segment` frames (a read returns several frames at
    /// once), but no more than this many: a peer sending others would use up this process's.
    static let descriptorLimit = 64

    /// The oldest descriptor received and not yet taken (it travels with a `segment` frame).
    func takeDescriptor() -> Int32? {
        descriptors.isEmpty ? nil : descriptors.removeFirst()
    }

    /// Reads more bytes into the buffer. - Returns: false at end of stream or on an error.
    private func fill() throws(WireError) -> Bool {
        if start > 0 {
            memmove(buffer, buffer + start, end - start)
            end -= start
            start = 0
        }
        while true {
            let result = receiveBytes(into: buffer + end, count: bufferSize - end)
            if result > 0 {
                end += result
                return true
            }
            if result < 0, errno == EINTR { continue }
            return false
        }
    }

    /// One `recvmsg`: bytes into `target`, descriptors that came with them onto `descriptors`.
    private func receiveBytes(into target: UnsafeMutableRawPointer, count: Int) -> Int {
        var arrived = (Int32(-1), Int32(-1), Int32(-1), Int32(-1), Int32(-1), Int32(-1), Int32(-1), Int32(-1))
        var arrivedCount: Int32 = 0
        let result = withUnsafeMutableBytes(of: &arrived) { slots in
            aiges_recv_with_fds(
                descriptor, target, count, slots.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: Int32.self), 8,
                &arrivedCount)
        }
        withUnsafeBytes(of: &arrived) { slots in
            descriptors.append(contentsOf: slots.bindMemory(to: Int32.self).prefix(Int(arrivedCount)))
        }
        return result
    }

    /// Ends both directions: a reader blocked in `receive` returns nil, sends fail.
    func shutDown() { shutdown(descriptor, Int32(SHUT_RDWR)) }

    deinit {
        close(descriptor)
        for fd in descriptors { close(fd) }
        buffer.deallocate()
    }
}
