import Commands
import HTTPTypes

extension CandidateCommandLog {
    /// Parses the `Ledgerlift-Legacy-Xid` header: a full transaction id (`xid8`) in decimal.
    public static func legacyXid(_ header: String?) throws(Problem) -> UInt64? {
        guard let header else { return nil }
        guard !header.isEmpty, header.utf8.count <= 20, header.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let xid = UInt64(header)
        else {
            throw Problem(
                .badRequest, code: "invalid_legacy_xid", title: "Invalid Ledgerlift-Legacy-Xid",
                detail: "Ledgerlift-Legacy-Xid must be a legacy transaction id (pg_current_xact_id()) in decimal")
        }
        return xid
    }
}
