import Foundation
import Testing

/// The release tarball of scripts/package.sh, unpacked and served from a fresh folder; README.md's commands.
@Suite struct ReleaseTests {
    /// Runs a command found on PATH in `directory` (the package root by default), killed after `timeout` s.
    static func command(
        _ arguments: [String], in directory: URL? = nil, environment: [String: String] = [:], timeout: Double = 300
    ) throws -> Harness.Run {
        try Harness.run(
            arguments, library: nil, executable: URL(fileURLWithPath: "/usr/bin/env"), in: directory,
            environment: environment, timeout: timeout)
    }

    /// Plugin.version ("aiges-swift-wrapper X.Y.Z") in Sources/AigesBridge/Plugin.swift: the release's version.
    static func version() throws -> String {
        let source = try String(
            contentsOf: Harness.root.appending(path: "Sources/AigesBridge/Plugin.swift"), encoding: .utf8)
        let pattern = try Regex(#"static let version: StaticString = "aiges-swift-wrapper ([^"]+)""#)
        let match = try #require(source.firstMatch(of: pattern), "no Plugin.version in Plugin.swift")
        return try #require(match.output[1].substring.map(String.init))
    }

    /// The GNU build id of an ELF file (readelf -n).
    private func buildID(_ file: URL) throws -> String? {
        let notes = try Self.command(["readelf", "-n", file.path]).output
        return notes.split(separator: "\n").first { $0.contains("Build ID:") }?
            .split(separator: ":").last?.trimmingCharacters(in: .whitespaces)
    }

    @Test func theTarballUnpacksAnywhereAndServesTheExamples() throws {
        let work = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: work) }
        let out = work.appending(path: "out")
        let package = try Self.command(
            ["bash", "scripts/package.sh", "--no-build", "-o", out.path], environment: ["AIGES_DIST": Harness.dist.path]
        )
        try #require(package.status == 0, "scripts/package.sh failed: \(package)")

        let machine = try Self.command(["uname", "-m"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        let name = "aiges-swift-wrapper-\(try Self.version())-linux-\(machine)"
        let tarball = out.appending(path: "\(name).tar.gz")
        try #require(FileManager.default.fileExists(atPath: tarball.path), "no \(tarball.path): \(package)")
        let sum = try Self.command(["sha256sum", "-c", "\(name).tar.gz.sha256"], in: out)
        #expect(sum.status == 0, "\(sum)")

        // Unpacked in a fresh folder, away from the repo and dist/.
        let fresh = work.appending(path: "fresh")
        try FileManager.default.createDirectory(at: fresh, withIntermediateDirectories: true)
        let untar = try Self.command(["tar", "-xzf", tarball.path, "-C", fresh.path])
        try #require(untar.status == 0, "\(untar)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: fresh.path) == [name], "one top folder")
        let top = fresh.appending(path: name)
        let contents = Set(try FileManager.default.contentsOfDirectory(atPath: top.path))
        for expected in [
            "libwrapper.so", "libwrapper.so.debug", "aiges-worker", "aiges-harness", "examples", "README.md",
        ] {
            #expect(contents.contains(expected), "\(expected) is missing: \(contents.sorted())")
        }
        #expect(
            FileManager.default.contents(atPath: top.appending(path: "README.md").path)
                == FileManager.default.contents(atPath: Harness.root.appending(path: "README.md").path))
        #expect(!contents.contains { $0 == "log" || $0 == "__pycache__" }, "\(contents.sorted())")

        // The library is stripped, its debug info is in the file its .gnu_debuglink names (with that file's CRC),
        // both have the same build id, and the fifteen entry points are still exported.
        let library = top.appending(path: "libwrapper.so")
        let debug = top.appending(path: "libwrapper.so.debug")
        let kinds = try Self.command(["file", "-b", library.path, debug.path]).output.split(separator: "\n")
        try #require(kinds.count == 2, "\(kinds)")
        #expect(kinds[0].hasSuffix(", stripped") && !kinds[0].contains("debug_info"), "libwrapper.so: \(kinds[0])")
        #expect(kinds[1].contains("with debug_info"), "libwrapper.so.debug: \(kinds[1])")
        let link = work.appending(path: "debuglink")
        let dump = try Self.command(
            [
                "objcopy", "--dump-section", ".gnu_debuglink=\(link.path)", library.path,
                work.appending(path: "scratch").path,
            ])
        try #require(dump.status == 0, "\(dump)")
        let section = [UInt8](try Data(contentsOf: link))
        let nameEnd = try #require(section.firstIndex(of: 0), "no .gnu_debuglink in libwrapper.so")
        #expect(String(decoding: section[..<nameEnd], as: UTF8.self) == "libwrapper.so.debug")
        let crcOffset = (nameEnd + 1 + 3) & ~3
        try #require(section.count >= crcOffset + 4, "\(section.count) bytes of .gnu_debuglink")
        let linkedCRC = section[crcOffset..<crcOffset + 4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let crc = try Self.command(
            [
                "/usr/bin/python3", "-c", "import sys, zlib; print(zlib.crc32(open(sys.argv[1], 'rb').read()))",
                debug.path,
            ])
        #expect(UInt32(crc.output.trimmingCharacters(in: .whitespacesAndNewlines)) == linkedCRC, "\(crc)")
        #expect(try buildID(library) != nil && buildID(library) == buildID(debug))
        let symbols = try Self.command(["readelf", "--dyn-syms", "-W", library.path]).output
        let exported = symbols.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 8, fields[4] == "GLOBAL" || fields[4] == "WEAK", fields[6] != "UND" else {
                return nil
            }
            return String(fields[7])
        }
        #expect(Set(exported) == ABITests.entryPoints, "\(exported.sorted())")

        // The unpacked harness loads the unpacked library beside it (no --so) and serves the examples from there.
        let harness = top.appending(path: "aiges-harness")
        let exec = try Harness.run(
            [
                "exec", "-c", "wrapper.file=examples/echo/wrapper.py", "-i", "text=served from the tarball",
                "-i", "audio:audio=gen:4K", "-n", "3", "-e",
            ], library: nil, executable: harness, in: top, environment: ["LD_DEBUG": "files"])
        #expect(exec.status == 0, "\(exec)")
        #expect(exec.output.contains("exec: 3 requests, 0 failed"), "\(exec)")
        #expect(exec.errors.contains("file=\(library.path) "), "loaded the unpacked libwrapper.so: \(exec)")
        let session = try Harness.run(
            [
                "session", "--push", "-c", "wrapper.file=examples/streaming/wrapper.py", "-i", "text=one ", "-i",
                "text=two",
            ],
            library: nil, executable: harness, in: top)
        #expect(session.status == 0 && session.output.contains("session: 1 sessions, 0 failed"), "\(session)")
        let probe = try Harness.run(
            ["probe", "-c", "wrapper.file=examples/echo/wrapper.py"], library: nil, executable: harness, in: top)
        #expect(probe.status == 0 && probe.output.contains("probe: 0 failed, 0 skipped"), "\(probe)")
        // Worker processes run from the unpacked aiges-worker beside the unpacked library.
        let workers = try Harness.run(
            [
                "exec", "-c", "wrapper.file=examples/echo/wrapper.py", "-c", "workers=2", "-i", "big=gen:100K", "-n",
                "4", "-t", "2", "-e",
            ], library: nil, executable: harness, in: top)
        #expect(workers.status == 0 && workers.output.contains("exec: 8 requests, 0 failed"), "\(workers)")
        #expect(workers.errors.contains("\(name)/aiges-worker)"), "the unpacked aiges-worker served: \(workers)")

        // The wheel holds aiges_embed: importable straight from it (a pure-Python wheel is a zip on sys.path).
        let wheels = contents.filter { $0.hasPrefix("aiges_embed-") && $0.hasSuffix(".whl") }.sorted()
        try #require(wheels.count == 1, "one aiges_embed wheel: \(contents.sorted())")
        let wheel = top.appending(path: wheels[0]).path
        let imported = try Self.command(
            ["/usr/bin/python3", "-s", "-c", "import aiges_embed; print(aiges_embed.__file__)"], in: work,
            environment: ["PYTHONPATH": wheel])
        #expect(imported.status == 0 && imported.output.hasPrefix(wheel + "/aiges_embed/"), "\(imported)")
    }

    /// A fenced block of README.md: its language, its text (a list item's indentation removed), its first
    /// line number, and the reason an `<!-- not run: REASON -->` line right before it gives.
    struct ReadmeBlock: CustomStringConvertible {
        let language: String
        let text: String
        let line: Int
        let notRun: String?
        var description: String { "README.md:\(line) (```\(language))" }
    }

    static func readmeBlocks() throws -> [ReadmeBlock] {
        let lines = try String(contentsOf: Harness.root.appending(path: "README.md"), encoding: .utf8)
            .components(separatedBy: "\n")
        let marker = try Regex(#"^<!-- not run: (.*\S.*) -->$"#)
        var blocks: [ReadmeBlock] = []
        var index = 0
        while index < lines.count {
            let fence = lines[index].drop { $0 == " " }
            guard fence.hasPrefix("```") else {
                index += 1
                continue
            }
            let indent = lines[index].count - fence.count
            let language = fence.dropFirst(3).trimmingCharacters(in: .whitespaces)
            var previous = index - 1
            while previous >= 0 && lines[previous].trimmingCharacters(in: .whitespaces).isEmpty { previous -= 1 }
            let before = previous >= 0 ? lines[previous].trimmingCharacters(in: .whitespaces) : ""
            let notRun = before.firstMatch(of: marker).flatMap { $0.output[1].substring.map(String.init) }
            var body: [String] = []
            var end = index + 1
            while end < lines.count && lines[end].trimmingCharacters(in: .whitespaces) != "```" {
                body.append(String(lines[end].dropFirst(min(indent, lines[end].prefix { $0 == " " }.count))))
                end += 1
            }
            blocks.append(
                ReadmeBlock(language: language, text: body.joined(separator: "\n"), line: index + 1, notRun: notRun))
            index = end + 1
        }
        return blocks
    }

    @Test func everyReadmeBlockIsTaggedAndCommandsAreSh() throws {
        // So that no command block escapes the test below by its tag: commands are ```sh, the rest say what they are.
        let blocks = try Self.readmeBlocks()
        #expect(blocks.contains { $0.language == "sh" })
        for block in blocks {
            #expect(!block.language.isEmpty, "\(block) has no language (```text for output, ```sh for commands)")
            #expect(
                !["bash", "shell", "console", "zsh", "shell-session"].contains(block.language),
                "\(block): commands are ```sh blocks, which the tests run")
            if block.notRun != nil { #expect(block.language == "sh", "\(block): only ```sh blocks are run") }
        }
    }

    @Test func everyReadmeCommandBlockRunsOrIsMarkedNotRun() throws {
        // Each ```sh block runs with bash -e from the package root, against dist/ as built (AIGES_NO_BUILD:
        // scripts/build.sh cannot build while swift test holds .build); a block that cannot run here says so
        // with <!-- not run: REASON --> right before it.
        let blocks = try Self.readmeBlocks().filter { $0.language == "sh" }
        var ran = 0
        for block in blocks {
            if let reason = block.notRun {
                #expect(!reason.trimmingCharacters(in: .whitespaces).isEmpty, "\(block)")
                continue
            }
            let run = try Self.command(
                ["bash", "-e", "-o", "pipefail", "-c", block.text], environment: ["AIGES_NO_BUILD": "1"], timeout: 600)
            #expect(run.status == 0, "\(block) failed:\n\(block.text)\n\(run)")
            ran += 1
        }
        #expect(ran > 0 && ran + blocks.filter { $0.notRun != nil }.count == blocks.count)
    }
}
