import AigesABI
import CPython
import CPythonShims
import Glibc

/// Batches in this process: `wrapperOnceExecBatch(requests)` (see `Batcher`).
extension InProcessEngine {
    /// Calls `wrapperOnceExecBatch(requests)` with one `aiges_embed.BatchRequest` per call (its
    /// `params`, `reqData`, `usrTag` and `persId`, as `wrapperOnceExec` would get them) and turns the
    /// list it returns into one output per request, in order.
    ///
    /// A request whose lists cannot be read, whose Response has a non-zero `error_code` or a bad
    /// output, or that kept loader memory (`data.lend`) fails alone. The whole batch fails when the
    /// method raises (`pythonException`) or does not return a list or tuple with one item per request
    /// (`badReturnType`). Each request's loans end before this returns, as for `exec`.
    func execBatch(_ calls: [OnceCall]) throws(PluginError) -> [Result<OutputBatch, PluginError>] {
        try withGIL { () throws(PluginError) -> [Result<OutputBatch, PluginError>] in
            guard let objects = Bootstrap.objects else {
                throw PluginError(.notInitialized, "aiges_embed not installed")
            }
            var results = [Result<OutputBatch, PluginError>?](repeating: nil, count: calls.count)
            var requests: [BatchItem] = []
            let list = try PyRef(steal: PyList_New(0), "creating the batch list")
            for (index, call) in calls.enumerated() {
                do throws(PluginError) {
                    let item = try BatchItem(call, index: index, objects: objects)
                    guard PyList_Append(list.pointer, item.object.pointer) == 0 else {
                        throw PluginError.fromPython(.internalError, "filling the batch list")
                    }
                    requests.append(item)
                } catch {
                    results[index] = .failure(error)
                }
            }
            guard !requests.isEmpty else { return results.map { $0 ?? .failure(Self.lost) } }
            var failure: PluginError?
            do throws(PluginError) {
                let returned = try wrapper.call(.wrapperOnceExecBatch, CallArguments(requests: list.pointer))
                for (item, output) in zip(requests, try outputs(of: returned.pointer, count: requests.count)) {
                    results[item.index] = output
                }
            } catch {
                failure = error
            }
            // Ours go first, so that only what wrapper.py kept counts as kept (and gets its own bytes).
            _ = consume list
            var escaped: [(Int, PluginError)] = []
            for item in requests {
                if let error = item.finish() { escaped.append((item.index, error)) }
            }
            if let failure { throw failure }
            for (index, error) in escaped { results[index] = .failure(error) }
            return results.map { $0 ?? .failure(Self.lost) }
        }
    }

    /// What no request should ever get: a batch slot left without a result.
    private static var lost: PluginError {
        PluginError(.internalError, "wrapperOnceExecBatch: a request got no result")
    }

    /// The outputs of `returned`, one per request: a list or tuple of `count` Responses.
    private func outputs(of returned: PyPointer, count: Int) throws(PluginError) -> [Result<OutputBatch, PluginError>] {
        guard aiges_py_is_list(returned) != 0 || aiges_py_is_tuple(returned) != 0 else {
            throw PluginError(
                .badReturnType,
                "Wrapper.wrapperOnceExecBatch returned \(describe(returned)), expected a list of \(count) Response")
        }
        // A tuple copy owns its items: wrapper.py code run while reading them cannot change the list.
        let sequence = try PyRef(steal: PySequence_Tuple(returned), "wrapperOnceExecBatch's result")
        let total = aiges_py_fast_size(sequence.pointer)
        guard total == count else {
            throw PluginError(
                .badReturnType,
                "Wrapper.wrapperOnceExecBatch returned \(total) result(s) for \(count) request(s): one Response each, in order"
            )
        }
        return (0..<total).map { index in
            // Borrowed from the tuple.
            guard let item = aiges_py_fast_item(sequence.pointer, index) else { return .failure(Self.lost) }
            do throws(PluginError) {
                return .success(try OutputBatch(item, kind: .once))
            } catch {
                return .failure(Self.naming(error, index: index, of: total))
            }
        }
    }

    /// A request's own error, its text naming the batch and the request's place in it.
    private static func naming(_ error: PluginError, index: Int, of total: Int) -> PluginError {
        guard let kind = PluginErrorCode(rawValue: error.code) else { return error }  // wrapper.py's own code
        let detail =
            kind == .emptyResponse
            ? "a Response whose list is empty" : error.detail
        return PluginError(kind, "Wrapper.wrapperOnceExecBatch, result \(index + 1) of \(total): \(detail)")
    }
}

/// One request of a batch on its way into Python: its `BatchRequest` object and its arguments, whose
/// request loans must end (`finish`) before the loader's call returns. Used with the GIL held.
private final class BatchItem {
    let index: Int
    /// The `BatchRequest` (owned; released by `finish` before the loans end).
    private(set) var object: PythonObject
    private var arguments: OnceArguments
    private var finished = false

    init(_ call: OnceCall, index: Int, objects: Bootstrap.Objects) throws(PluginError) {
        self.index = index
        arguments = try OnceArguments(call)
        var values: [PyPointer?] = [
            arguments.params.dict.pointer, arguments.request.list, arguments.usrTag.pointer, arguments.persId.pointer,
        ]
        object = PythonObject(
            try PyRef(steal: aiges_py_vectorcall(objects.batchRequest, &values, 4), "creating a BatchRequest"))
    }

    /// Drops our reference to the `BatchRequest` and ends the loans (once).
    /// - Returns: `viewEscaped` if wrapper.py kept loader memory (`data.lend`), else nil.
    func finish() -> PluginError? {
        guard !finished else { return nil }
        finished = true
        object = PythonObject(PyRef(retain: aiges_py_none()))
        do throws(PluginError) { try arguments.request.finish() } catch { return error }
        return nil
    }
}
