/// Word lists for names, e-mail addresses and descriptions (picked by the seeded generator).
enum Vocabulary {
    static let firstNames = [
        "maya", "dana", "wen", "amara", "liam", "sofia", "noah", "aiko", "omar", "lena", "ravi", "chloe", "mateo",
        "ines", "kofi", "hana", "jonas", "priya", "lucas", "freya", "yusuf", "elena", "tariq", "mia", "sven", "zara",
        "diego", "nora", "kenji", "fatima", "arjun", "clara", "emeka", "ingrid", "tomas", "leila", "felix", "yara",
    ]
    static let lastNames = [
        "okafor", "smith", "tanaka", "garcia", "muller", "rossi", "nguyen", "kowalski", "haddad", "olsen", "silva",
        "kim", "dubois", "patel", "obi", "novak", "jensen", "alvarez", "sato", "fischer", "mensah", "larsen", "ali",
        "moreau", "costa", "ivanova", "brennan", "yilmaz", "chen", "adeyemi", "lindqvist", "romero", "kaur", "weber",
    ]
    static let companyFirst = [
        "Bright", "Quill", "North", "Tide", "Marrow", "Copper", "Grey", "Orchid", "Pixel", "Raven", "Kite", "Sakura",
        "Cedar", "Harbor", "Lumen", "Atlas", "Birch", "Cobalt", "Delta", "Ember", "Fable", "Granite", "Hollow",
        "Indigo", "Juniper", "Kestrel", "Lark", "Maple", "Nimbus", "Onyx", "Pine", "Quartz", "Rook", "Sable",
        "Thistle", "Umber", "Vale", "Willow", "Yarrow", "Zephyr",
    ]
    static let companySecond = [
        "loom", "field", "water", "kettle", "harbor", "freight", "orchard", "script", "keel", "stone", "works",
        "forge", "light", "path", "mill", "gate", "wood", "point", "bridge", "craft", "line", "wave", "peak", "grove",
    ]
    static let companySuffix = [
        "Studio", "Labs", "Ltd", "Inc", "GmbH", "Consulting", "Logistics", "Apps", "Design", "Group", "Partners",
        "Analytics", "Media", "Systems", "Collective", "Co",
    ]

    static func timezones(_ currency: Currency) -> [String] {
        switch currency {
        case .usd:
            ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Toronto",
             "UTC", "Asia/Singapore", "Australia/Sydney", "Africa/Lagos", "Asia/Hong_Kong"]
        case .eur: ["Europe/Berlin", "Europe/Paris", "Europe/Madrid", "Europe/Amsterdam", "Europe/Dublin", "Europe/Rome"]
        case .gbp: ["Europe/London"]
        case .jpy: ["Asia/Tokyo"]
        case .kwd: ["Asia/Kuwait"]
        }
    }

    /// One-off services: description, price in rough dollars, maximum quantity.
    static let services: [(description: String, dollars: Int64, maxQuantity: Int)] = [
        ("Onboarding package", 250, 1), ("Consulting day", 800, 5), ("Data import service", 80, 1),
        ("Custom report", 150, 3), ("Training session", 400, 2), ("Priority support (quarter)", 300, 1),
    ]

    static let cardFailureCodes = ["card_declined", "insufficient_funds", "expired_card", "authentication_required", "processing_error"]
    static let cardFailureWeights = [40, 30, 15, 10, 5]
    static let debitFailureCodes = ["insufficient_funds", "account_closed", "debit_not_authorized"]
    static let refundReasons = ["requested_by_customer", "duplicate", "fraudulent"]
    static let refundReasonWeights = [80, 15, 5]
    static let creditNoteReasons = ["service_outage", "product_unsatisfactory", "order_change", "goodwill", "duplicate"]

    static let base62 = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
}
