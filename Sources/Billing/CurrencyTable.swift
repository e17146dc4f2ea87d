// The ISO 4217 table behind `Currency`. Kept apart from `Currency.swift` so the data can be
// re-checked against the published list without reading code.

/// One row of the currency table: an ISO 4217 alphabetic code with its numeric code, minor
/// unit and English name.
struct CurrencyTableEntry: Sendable {
    /// Three uppercase ASCII letters, e.g. `USD`.
    let code: String
    /// The ISO 4217 numeric code, e.g. `840` (informational; ANG and XCG share 532).
    let numericCode: Int
    /// Decimal places of the minor unit, or `nil` where ISO 4217 lists "N.A." (metals, bond
    /// market units, SDR, testing and no-currency codes): such codes cannot hold an amount.
    let minorUnitExponent: Int?
    /// The ISO 4217 English name.
    let name: String
    /// ISO 4217 marks the code as a fund (e.g. `CLF`, `USN`): usable, with a real exponent.
    let isFund: Bool
    /// Withdrawn from List One; kept because legacy rows written before the withdrawal hold it.
    let isWithdrawn: Bool

    init(
        _ code: String, _ numericCode: Int, _ minorUnitExponent: Int?, _ name: String,
        fund: Bool = false, withdrawn: Bool = false
    ) {
        self.code = code
        self.numericCode = numericCode
        self.minorUnitExponent = minorUnitExponent
        self.name = name
        self.isFund = fund
        self.isWithdrawn = withdrawn
    }
}

/// The ISO 4217 currency table.
///
/// - `active`: ISO 4217 List One as published by the maintenance agency on 2026-01-01, every
///   alphabetic code once (a code used by several countries appears once).
/// - `withdrawn`: codes withdrawn from List One since 2014 (List Three). A billing database
///   migrated now holds invoices written while they were legal tender, so they stay readable;
///   they are flagged `isWithdrawn` so new writes can refuse them.
enum CurrencyTable {
    /// Publication date of the List One this table follows.
    static let listOnePublished = "2026-01-01"

    static let active: [CurrencyTableEntry] = [
        .init("AED", 784, 2, "UAE Dirham"),
        .init("AFN", 971, 2, "Afghani"),
        .init("ALL", 8, 2, "Lek"),
        .init("AMD", 51, 2, "Armenian Dram"),
        .init("AOA", 973, 2, "Kwanza"),
        .init("ARS", 32, 2, "Argentine Peso"),
        .init("AUD", 36, 2, "Australian Dollar"),
        .init("AWG", 533, 2, "Aruban Florin"),
        .init("AZN", 944, 2, "Azerbaijan Manat"),
        .init("BAM", 977, 2, "Convertible Mark"),
        .init("BBD", 52, 2, "Barbados Dollar"),
        .init("BDT", 50, 2, "Taka"),
        .init("BHD", 48, 3, "Bahraini Dinar"),
        .init("BIF", 108, 0, "Burundi Franc"),
        .init("BMD", 60, 2, "Bermudian Dollar"),
        .init("BND", 96, 2, "Brunei Dollar"),
        .init("BOB", 68, 2, "Boliviano"),
        .init("BOV", 984, 2, "Mvdol", fund: true),
        .init("BRL", 986, 2, "Brazilian Real"),
        .init("BSD", 44, 2, "Bahamian Dollar"),
        .init("BTN", 64, 2, "Ngultrum"),
        .init("BWP", 72, 2, "Pula"),
        .init("BYN", 933, 2, "Belarusian Ruble"),
        .init("BZD", 84, 2, "Belize Dollar"),
        .init("CAD", 124, 2, "Canadian Dollar"),
        .init("CDF", 976, 2, "Congolese Franc"),
        .init("CHE", 947, 2, "WIR Euro", fund: true),
        .init("CHF", 756, 2, "Swiss Franc"),
        .init("CHW", 948, 2, "WIR Franc", fund: true),
        .init("CLF", 990, 4, "Unidad de Fomento", fund: true),
        .init("CLP", 152, 0, "Chilean Peso"),
        .init("CNY", 156, 2, "Yuan Renminbi"),
        .init("COP", 170, 2, "Colombian Peso"),
        .init("COU", 970, 2, "Unidad de Valor Real", fund: true),
        .init("CRC", 188, 2, "Costa Rican Colon"),
        .init("CUP", 192, 2, "Cuban Peso"),
        .init("CVE", 132, 2, "Cabo Verde Escudo"),
        .init("CZK", 203, 2, "Czech Koruna"),
        .init("DJF", 262, 0, "Djibouti Franc"),
        .init("DKK", 208, 2, "Danish Krone"),
        .init("DOP", 214, 2, "Dominican Peso"),
        .init("DZD", 12, 2, "Algerian Dinar"),
        .init("EGP", 818, 2, "Egyptian Pound"),
        .init("ERN", 232, 2, "Nakfa"),
        .init("ETB", 230, 2, "Ethiopian Birr"),
        .init("EUR", 978, 2, "Euro"),
        .init("FJD", 242, 2, "Fiji Dollar"),
        .init("FKP", 238, 2, "Falkland Islands Pound"),
        .init("GBP", 826, 2, "Pound Sterling"),
        .init("GEL", 981, 2, "Lari"),
        .init("GHS", 936, 2, "Ghana Cedi"),
        .init("GIP", 292, 2, "Gibraltar Pound"),
        .init("GMD", 270, 2, "Dalasi"),
        .init("GNF", 324, 0, "Guinean Franc"),
        .init("GTQ", 320, 2, "Quetzal"),
        .init("GYD", 328, 2, "Guyana Dollar"),
        .init("HKD", 344, 2, "Hong Kong Dollar"),
        .init("HNL", 340, 2, "Lempira"),
        .init("HTG", 332, 2, "Gourde"),
        .init("HUF", 348, 2, "Forint"),
        .init("IDR", 360, 2, "Rupiah"),
        .init("ILS", 376, 2, "New Israeli Sheqel"),
        .init("INR", 356, 2, "Indian Rupee"),
        .init("IQD", 368, 3, "Iraqi Dinar"),
        .init("IRR", 364, 2, "Iranian Rial"),
        .init("ISK", 352, 0, "Iceland Krona"),
        .init("JMD", 388, 2, "Jamaican Dollar"),
        .init("JOD", 400, 3, "Jordanian Dinar"),
        .init("JPY", 392, 0, "Yen"),
        .init("KES", 404, 2, "Kenyan Shilling"),
        .init("KGS", 417, 2, "Som"),
        .init("KHR", 116, 2, "Riel"),
        .init("KMF", 174, 0, "Comorian Franc"),
        .init("KPW", 408, 2, "North Korean Won"),
        .init("KRW", 410, 0, "Won"),
        .init("KWD", 414, 3, "Kuwaiti Dinar"),
        .init("KYD", 136, 2, "Cayman Islands Dollar"),
        .init("KZT", 398, 2, "Tenge"),
        .init("LAK", 418, 2, "Lao Kip"),
        .init("LBP", 422, 2, "Lebanese Pound"),
        .init("LKR", 144, 2, "Sri Lanka Rupee"),
        .init("LRD", 430, 2, "Liberian Dollar"),
        .init("LSL", 426, 2, "Loti"),
        .init("LYD", 434, 3, "Libyan Dinar"),
        .init("MAD", 504, 2, "Moroccan Dirham"),
        .init("MDL", 498, 2, "Moldovan Leu"),
        .init("MGA", 969, 2, "Malagasy Ariary"),
        .init("MKD", 807, 2, "Denar"),
        .init("MMK", 104, 2, "Kyat"),
        .init("MNT", 496, 2, "Tugrik"),
        .init("MOP", 446, 2, "Pataca"),
        .init("MRU", 929, 2, "Ouguiya"),
        .init("MUR", 480, 2, "Mauritius Rupee"),
        .init("MVR", 462, 2, "Rufiyaa"),
        .init("MWK", 454, 2, "Malawi Kwacha"),
        .init("MXN", 484, 2, "Mexican Peso"),
        .init("MXV", 979, 2, "Mexican Unidad de Inversion (UDI)", fund: true),
        .init("MYR", 458, 2, "Malaysian Ringgit"),
        .init("MZN", 943, 2, "Mozambique Metical"),
        .init("NAD", 516, 2, "Namibia Dollar"),
        .init("NGN", 566, 2, "Naira"),
        .init("NIO", 558, 2, "Cordoba Oro"),
        .init("NOK", 578, 2, "Norwegian Krone"),
        .init("NPR", 524, 2, "Nepalese Rupee"),
        .init("NZD", 554, 2, "New Zealand Dollar"),
        .init("OMR", 512, 3, "Rial Omani"),
        .init("PAB", 590, 2, "Balboa"),
        .init("PEN", 604, 2, "Sol"),
        .init("PGK", 598, 2, "Kina"),
        .init("PHP", 608, 2, "Philippine Peso"),
        .init("PKR", 586, 2, "Pakistan Rupee"),
        .init("PLN", 985, 2, "Zloty"),
        .init("PYG", 600, 0, "Guarani"),
        .init("QAR", 634, 2, "Qatari Rial"),
        .init("RON", 946, 2, "Romanian Leu"),
        .init("RSD", 941, 2, "Serbian Dinar"),
        .init("RUB", 643, 2, "Russian Ruble"),
        .init("RWF", 646, 0, "Rwanda Franc"),
        .init("SAR", 682, 2, "Saudi Riyal"),
        .init("SBD", 90, 2, "Solomon Islands Dollar"),
        .init("SCR", 690, 2, "Seychelles Rupee"),
        .init("SDG", 938, 2, "Sudanese Pound"),
        .init("SEK", 752, 2, "Swedish Krona"),
        .init("SGD", 702, 2, "Singapore Dollar"),
        .init("SHP", 654, 2, "Saint Helena Pound"),
        .init("SLE", 925, 2, "Leone"),
        .init("SOS", 706, 2, "Somali Shilling"),
        .init("SRD", 968, 2, "Surinam Dollar"),
        .init("SSP", 728, 2, "South Sudanese Pound"),
        .init("STN", 930, 2, "Dobra"),
        .init("SVC", 222, 2, "El Salvador Colon"),
        .init("SYP", 760, 2, "Syrian Pound"),
        .init("SZL", 748, 2, "Lilangeni"),
        .init("THB", 764, 2, "Baht"),
        .init("TJS", 972, 2, "Somoni"),
        .init("TMT", 934, 2, "Turkmenistan New Manat"),
        .init("TND", 788, 3, "Tunisian Dinar"),
        .init("TOP", 776, 2, "Pa’anga"),
        .init("TRY", 949, 2, "Turkish Lira"),
        .init("TTD", 780, 2, "Trinidad and Tobago Dollar"),
        .init("TWD", 901, 2, "New Taiwan Dollar"),
        .init("TZS", 834, 2, "Tanzanian Shilling"),
        .init("UAH", 980, 2, "Hryvnia"),
        .init("UGX", 800, 0, "Uganda Shilling"),
        .init("USD", 840, 2, "US Dollar"),
        .init("USN", 997, 2, "US Dollar (Next day)", fund: true),
        .init("UYI", 940, 0, "Uruguay Peso en Unidades Indexadas (UI)", fund: true),
        .init("UYU", 858, 2, "Peso Uruguayo"),
        .init("UYW", 927, 4, "Unidad Previsional"),
        .init("UZS", 860, 2, "Uzbekistan Sum"),
        .init("VED", 926, 2, "Bolívar Soberano"),
        .init("VES", 928, 2, "Bolívar Soberano"),
        .init("VND", 704, 0, "Dong"),
        .init("VUV", 548, 0, "Vatu"),
        .init("WST", 882, 2, "Tala"),
        .init("XAD", 396, 2, "Arab Accounting Dinar"),
        .init("XAF", 950, 0, "CFA Franc BEAC"),
        .init("XAG", 961, nil, "Silver"),
        .init("XAU", 959, nil, "Gold"),
        .init("XBA", 955, nil, "Bond Markets Unit European Composite Unit (EURCO)"),
        .init("XBB", 956, nil, "Bond Markets Unit European Monetary Unit (E.M.U.-6)"),
        .init("XBC", 957, nil, "Bond Markets Unit European Unit of Account 9 (E.U.A.-9)"),
        .init("XBD", 958, nil, "Bond Markets Unit European Unit of Account 17 (E.U.A.-17)"),
        .init("XCD", 951, 2, "East Caribbean Dollar"),
        .init("XCG", 532, 2, "Caribbean Guilder"),
        .init("XDR", 960, nil, "SDR (Special Drawing Right)"),
        .init("XOF", 952, 0, "CFA Franc BCEAO"),
        .init("XPD", 964, nil, "Palladium"),
        .init("XPF", 953, 0, "CFP Franc"),
        .init("XPT", 962, nil, "Platinum"),
        .init("XSU", 994, nil, "Sucre"),
        .init("XTS", 963, nil, "Codes specifically reserved for testing purposes"),
        .init("XUA", 965, nil, "ADB Unit of Account"),
        .init("XXX", 999, nil, "The codes assigned for transactions where no currency is involved"),
        .init("YER", 886, 2, "Yemeni Rial"),
        .init("ZAR", 710, 2, "Rand"),
        .init("ZMW", 967, 2, "Zambian Kwacha"),
        .init("ZWG", 924, 2, "Zimbabwe Gold"),
    ]

    static let withdrawn: [CurrencyTableEntry] = [
        .init("ANG", 532, 2, "Netherlands Antillean Guilder", withdrawn: true),  // replaced by XCG (2025)
        .init("BGN", 975, 2, "Bulgarian Lev", withdrawn: true),  // replaced by EUR (2026)
        .init("BYR", 974, 0, "Belarusian Ruble", withdrawn: true),  // replaced by BYN (2016)
        .init("CUC", 931, 2, "Peso Convertible", withdrawn: true),  // Cuba unified on CUP
        .init("HRK", 191, 2, "Kuna", withdrawn: true),  // replaced by EUR (2023)
        .init("LTL", 440, 2, "Lithuanian Litas", withdrawn: true),  // replaced by EUR (2015)
        .init("LVL", 428, 2, "Latvian Lats", withdrawn: true),  // replaced by EUR (2014)
        .init("MRO", 478, 2, "Ouguiya", withdrawn: true),  // replaced by MRU (2018)
        .init("SLL", 694, 2, "Leone", withdrawn: true),  // replaced by SLE
        .init("STD", 678, 2, "Dobra", withdrawn: true),  // replaced by STN (2018)
        .init("VEF", 937, 2, "Bolívar", withdrawn: true),  // replaced by VES (2018)
        .init("ZWL", 932, 2, "Zimbabwe Dollar", withdrawn: true),  // replaced by ZWG (2024)
    ]

    /// Every row by alphabetic code.
    static let byCode: [String: CurrencyTableEntry] = Dictionary(
        uniqueKeysWithValues: (active + withdrawn).map { ($0.code, $0) }
    )
}
