import CLibPQ

/// Writes rows into a running `COPY … FROM STDIN` in PostgreSQL's text format.
///
/// Fields are escaped (`\\`, `\n`, `\r`, `\t`; NULL as `\N`) and buffered as UTF-8 bytes; the
/// buffer goes to the server with `PQputCopyData` — always with its byte count, never a
/// character count — each time it reaches ``flushThreshold``.
///
/// - Important: Valid only inside the ``Session/copyIn(_:_:)`` closure that gave it to you.
public final class CopyInWriter {
    /// Bytes buffered before they are sent.
    public static let flushThreshold = 256 * 1024

    private let connection: OpaquePointer
    private var buffer: [UInt8] = []
    private var fieldsInRow = 0
    /// Rows completed so far.
    public private(set) var rowsWritten = 0
    /// The most bytes ever held in the buffer at once: bounded by ``flushThreshold`` plus one row.
    public private(set) var peakBufferedBytes = 0

    init(connection: OpaquePointer) {
        self.connection = connection
        buffer.reserveCapacity(Self.flushThreshold + 64 * 1024)
    }

    /// Writes one row of text values (`nil` for NULL).
    public func writeRow(_ fields: [String?]) throws {
        for field in fields { append(field) }
        try endRow()
    }

    /// Writes one row of typed values, in their PostgreSQL text form (`nil` for NULL).
    public func writeRow(_ values: [(any PostgresEncodable)?]) throws {
        for value in values { append(value?.postgresText) }
        try endRow()
    }

    /// Appends one field to the current row; finish the row with ``endRow()``.
    public func append(_ field: String?) {
        if fieldsInRow > 0 { buffer.append(9) }
        fieldsInRow += 1
        guard var field else {
            buffer.append(UInt8(ascii: "\\"))
            buffer.append(UInt8(ascii: "N"))
            return
        }
        field.withUTF8 { bytes in
            // Most fields need no escaping: copy runs between special bytes in one go.
            var runStart = 0
            for (i, byte) in bytes.enumerated() where byte == 92 || byte == 10 || byte == 13 || byte == 9 {
                buffer.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i]))
                buffer.append(92)
                switch byte {
                case 92: buffer.append(92)
                case 10: buffer.append(UInt8(ascii: "n"))
                case 13: buffer.append(UInt8(ascii: "r"))
                default: buffer.append(UInt8(ascii: "t"))
                }
                runStart = i + 1
            }
            buffer.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart...]))
        }
    }

    /// Appends an integer field without going through `String`.
    public func append(_ value: Int64) {
        if fieldsInRow > 0 { buffer.append(9) }
        fieldsInRow += 1
        if value == 0 {
            buffer.append(48)
            return
        }
        var magnitude = value.magnitude
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
            UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { raw in
            while magnitude > 0 {
                raw[count] = UInt8(magnitude % 10) + 48
                magnitude /= 10
                count += 1
            }
            if value < 0 { buffer.append(UInt8(ascii: "-")) }
            for i in stride(from: count - 1, through: 0, by: -1) { buffer.append(raw[i]) }
        }
    }

    /// Ends the current row, sending the buffer when it is full.
    public func endRow() throws {
        buffer.append(10)
        fieldsInRow = 0
        rowsWritten += 1
        if buffer.count > peakBufferedBytes { peakBufferedBytes = buffer.count }
        if buffer.count >= Self.flushThreshold { try flush() }
    }

    /// Sends whatever is buffered.
    func flush() throws {
        guard !buffer.isEmpty else { return }
        let sent = buffer.withUnsafeBufferPointer { bytes in
            bytes.withMemoryRebound(to: CChar.self) { PQputCopyData(connection, $0.baseAddress, Int32($0.count)) }
        }
        guard sent == 1 else {
            throw PostgresError(
                code: .connectionLost,
                message: "COPY data could not be sent: " + String(cString: PQerrorMessage(connection)))
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

/// PostgreSQL's COPY text format.
enum CopyText {
    /// Splits one data line into fields, decoding escapes; `\N` is `nil`.
    static func decodeLine(_ line: UnsafeBufferPointer<UInt8>) -> [String?] {
        var fields = [String?]()
        var field = [UInt8]()
        var isNull = false
        var i = 0
        func finish() {
            fields.append(isNull ? nil : String(decoding: field, as: UTF8.self))
            field.removeAll(keepingCapacity: true)
            isNull = false
        }
        while i < line.count {
            let byte = line[i]
            if byte == 9 {
                finish()
                i += 1
                continue
            }
            guard byte == 92, i + 1 < line.count else {
                field.append(byte)
                i += 1
                continue
            }
            let next = line[i + 1]
            i += 2
            switch next {
            case UInt8(ascii: "N"): isNull = true
            case UInt8(ascii: "n"): field.append(10)
            case UInt8(ascii: "r"): field.append(13)
            case UInt8(ascii: "t"): field.append(9)
            case UInt8(ascii: "b"): field.append(8)
            case UInt8(ascii: "f"): field.append(12)
            case UInt8(ascii: "v"): field.append(11)
            case UInt8(ascii: "x"):
                var value: UInt8 = 0
                var digits = 0
                while digits < 2, i < line.count, let v = hexValue(line[i]) {
                    value = value << 4 | v
                    i += 1
                    digits += 1
                }
                field.append(digits == 0 ? UInt8(ascii: "x") : value)
            case 48...55:
                var value = UInt32(next - 48)
                var digits = 1
                while digits < 3, i < line.count, line[i] >= 48, line[i] <= 55 {
                    value = value * 8 + UInt32(line[i] - 48)
                    i += 1
                    digits += 1
                }
                field.append(UInt8(truncatingIfNeeded: value))
            default: field.append(next)
            }
        }
        finish()
        return fields
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 97...102: c - 87
        case 65...70: c - 55
        default: nil
        }
    }
}
