import Billing
import Postgres

/// The ISO 4217 exponent table as SQL, so a mapping converts cents ↔ major units by joining it
/// instead of hand-writing `CASE currency WHEN 'JPY' THEN … END` (which silently misses the
/// currencies nobody thought of: KWD and BHD have 3 decimals, CLF 4).
///
/// The rows are ``Currency/all``: every code the converter accepts, with the exponent it uses,
/// so a mapping that joins this table converts exactly as Ledgerlift does. Three shapes:
/// - ``valuesList``: the bare `VALUES` rows, to paste anywhere;
/// - ``commonTableExpression``: a `WITH` entry a mapping query can start with (nothing to
///   install: works with a read-only legacy role);
/// - ``createView(named:)``: a view to install once, in a schema the user owns.
///
/// Columns: `code text` (ISO 4217 alphabetic code), `exponent int` (decimal places of the minor
/// unit), `minor_per_major numeric` (`10^exponent`, exact: `amount_cents / minor_per_major` is
/// the major amount, with no rounding).
public enum CurrencyExponentsSQL {
    /// The column list every shape uses.
    public static let columns = "code, exponent, minor_per_major"

    /// The default name of the CTE and the view.
    public static let defaultName = "currency_exponents"

    /// `('AED', 2, 100::numeric), …`: one row per currency, sorted by code.
    public static let valuesRows: [String] = Currency.all.map { currency in
        "(\(quoteLiteral(currency.code)), \(currency.minorUnitExponent), "
            + "1\(String(repeating: "0", count: currency.minorUnitExponent))::numeric)"
    }

    /// `VALUES ('AED', 2, 100::numeric), …` on one line per row.
    public static var valuesList: String {
        "VALUES " + valuesRows.joined(separator: ",\n       ")
    }

    /// `currency_exponents (code, exponent, minor_per_major) AS (VALUES …)`: put it after a
    /// mapping query's `WITH`.
    public static var commonTableExpression: String {
        "\(defaultName) (\(columns)) AS (\n    " + valuesList.replacing("\n", with: "\n    ") + "\n)"
    }

    /// A `CREATE OR REPLACE VIEW` of the table under `name` (optionally schema-qualified,
    /// `billing_ref.currency_exponents`; each part quoted as an identifier), with a comment
    /// saying where it came from, so whoever finds it in the legacy database knows.
    public static func createView(named name: String) -> String {
        let quoted = name.split(separator: ".", omittingEmptySubsequences: false).map {
            quoteIdentifier(String($0))
        }.joined(separator: ".")
        return """
            CREATE OR REPLACE VIEW \(quoted) (\(columns)) AS
            \(valuesList);
            COMMENT ON VIEW \(quoted) IS 'ISO 4217 minor-unit exponents as Ledgerlift converts amounts (ledgerlift mapping currencies --format sql)';
            """
    }
}

// MARK: - Exponents the legacy system used (`currency_exponents`)

extension CurrencyExponentsSQL {
    /// The entries of `exponents` that differ from ISO 4217's, sorted by code: the currencies
    /// whose amounts need converting. An entry equal to ISO's changes nothing.
    package static func deviating(_ exponents: [Currency: Int]) -> [(currency: Currency, exponent: Int)] {
        exponents.filter { $0.key.minorUnitExponent != $0.value }.sorted { $0.key < $1.key }
            .map { (currency: $0.key, exponent: $0.value) }
    }

    /// `10^power` as an exact `numeric` literal: `100::numeric`, `1::numeric`, `0.01::numeric`.
    package static func powerOfTen(_ power: Int) -> String {
        (power >= 0
            ? "1" + String(repeating: "0", count: power)
            : "0." + String(repeating: "0", count: -power - 1) + "1") + "::numeric"
    }

    /// `CASE <currency> WHEN 'HUF' THEN 100::numeric … END`: what an amount written with the
    /// declared exponent is multiplied by to be in ISO 4217 minor units (`10^(iso − declared)`,
    /// `0.1` for a currency written with one more decimal than ISO's; exact either way). NULL
    /// for a currency written as ISO 4217 says; `nil` when no declared exponent differs.
    ///
    /// - Parameter currency: SQL giving the row's currency code as text.
    package static func toISOMinorFactor(_ exponents: [Currency: Int], currency: String) -> String? {
        caseExpression(exponents, currency: currency) { powerOfTen($0.minorUnitExponent - $1) }
    }

    /// `CASE <currency> WHEN 'HUF' THEN 1::numeric … END`: `10^declared`, the legacy system's
    /// minor units per major unit; NULL for the other currencies; `nil` when none differs.
    package static func legacyMinorPerMajor(_ exponents: [Currency: Int], currency: String) -> String? {
        caseExpression(exponents, currency: currency) { powerOfTen($1) }
    }

    /// `CASE <currency> WHEN 'HUF' THEN 0 … END`: the declared exponent; NULL for the other
    /// currencies; `nil` when none differs.
    package static func legacyExponent(_ exponents: [Currency: Int], currency: String) -> String? {
        caseExpression(exponents, currency: currency) { "\($1)" }
    }

    private static func caseExpression(
        _ exponents: [Currency: Int], currency: String, _ value: (Currency, Int) -> String
    ) -> String? {
        let entries = deviating(exponents)
        guard !entries.isEmpty else { return nil }
        let whens = entries.map { "WHEN \(quoteLiteral($0.currency.code)) THEN \(value($0.currency, $0.exponent))" }
        return "(CASE \(currency) " + whens.joined(separator: " ") + " END)"
    }
}
