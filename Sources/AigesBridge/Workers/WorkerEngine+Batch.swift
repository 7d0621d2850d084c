import AigesABI

/// Batches (config `batch.max_size`) in worker mode: the whole batch goes to one worker, whose own
/// engine makes the one `wrapperOnceExecBatch` call.
extension WorkerEngine {
    func execBatch(_ calls: [OnceCall]) throws(PluginError) -> [Result<OutputBatch, PluginError>] {
        let worker = try pick()
        defer { worker.leave() }
        var frame = FrameWriter(.execBatch, id: worker.makeID())
        frame.put(UInt32(calls.count))
        do throws(PluginError) {
            for call in calls { try frame.put(call: call, pool: worker.inputs) }
        } catch {
            for lease in frame.leases { worker.inputs.doneWriting(lease, sent: false) }
            throw error
        }
        var (reply, reader) = try worker.request(frame)
        do throws(WireError) {
            let count = Int(try reader.read(UInt32.self))
            guard count == calls.count else {
                throw WireError(what: "\(count) batch results for \(calls.count) requests")
            }
            var results: [Result<OutputBatch, PluginError>] = []
            results.reserveCapacity(count)
            for _ in 0..<count {
                let code = try reader.read(Int32.self)
                let text = try reader.readText()
                if code != 0 {
                    results.append(.failure(PluginError(wrapperCode: code, text: text)))
                } else {
                    results.append(.success(try worker.output(&reader, reply)))
                }
            }
            return results
        } catch {
            throw PluginError(.internalError, "worker \(worker.slot) sent a malformed batch reply: \(error.what)")
        }
    }
}
