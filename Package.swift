// swift-tools-version: 6.1
import PackageDescription

/// Settings every Ledgerlift target shares: Swift 6 language mode (the package default at this
/// tools version) plus the upcoming features that keep existential and import use explicit.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "ledgerlift",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Postgres", targets: ["Postgres"]),
        .library(name: "EventStore", targets: ["EventStore"]),
        .executable(name: "ledgerlift", targets: ["ledgerlift"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        // serve: the HTTP API (traits off: no swift-configuration), its SIGTERM handling and metrics.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        // Stripe webhooks: HMAC-SHA256 of the signature header.
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        // serve: a request the HTTP parser refuses answered as a problem document (MalformedRequestHandler).
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.34.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .target(
            name: "Postgres",
            dependencies: ["CLibPQ"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "EventStore",
            dependencies: ["Postgres"],
            swiftSettings: swiftSettings
        ),
        // JSON values and text tables: formats every layer above reads and prints.
        .target(
            name: "TextFormats",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Billing",
            dependencies: ["EventStore", "Postgres", "TextFormats", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // The user's schema in, canonical rows out: the mapping file, its checker, the row
        // converter, entity sources, cross-row rules and the quarantine.
        .target(
            name: "Mapping",
            dependencies: ["Postgres", "EventStore", "Billing", "TextFormats", .product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings
        ),
        // The event-sourced write path's rules: billing commands decided on the streams'
        // current rows, their events made by the same transitions shadow mode uses.
        .target(
            name: "Commands",
            dependencies: ["Billing", "EventStore", "Postgres", "TextFormats"],
            swiftSettings: swiftSettings
        ),
        // Stripe's webhooks: signatures verified, events mapped to canonical rows and appended as
        // observed transitions (origin `stripe`), deduplicated and ordered per Stripe object.
        .target(
            name: "Webhooks",
            dependencies: [
                "Billing", "Commands", "EventStore", "Postgres", "TextFormats", .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Migration",
            dependencies: [
                "Postgres", "EventStore", "Billing", "Mapping", "TextFormats", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Diff",
            dependencies: [
                "Postgres", "EventStore", "Billing", "Mapping", "TextFormats", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Fixtures",
            dependencies: ["Postgres"],
            swiftSettings: swiftSettings
        ),
        // The legacy application, simulated: live billing traffic on the reference schema, its
        // journal of acknowledged writes, and the check that none was lost.
        .target(
            name: "Simulator",
            dependencies: [
                "Postgres", "EventStore", "Billing", "Commands", "Fixtures", "TextFormats",
                // Candidate mode reads the rows each legacy transaction touched as shadow mode does.
                "Shadow", "Mapping",
                .product(name: "Yams", package: "Yams"), .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: swiftSettings
        ),
        // Shadow mode: capture triggers in the legacy database (an outbox of changed keys, written
        // in the writing transaction), installed and removed from a mapping's sources.
        .target(
            name: "Shadow",
            dependencies: [
                "Postgres", "Billing", "Mapping", "EventStore", "Migration", "Diff", "TextFormats", "Commands",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // `ledgerlift serve`: the HTTP JSON API over the command layer and the read models —
        // problem documents, idempotency keys, health, Prometheus metrics, graceful shutdown.
        .target(
            name: "Server",
            dependencies: [
                "Commands", "Billing", "EventStore", "Postgres", "TextFormats", "Webhooks",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ],
            swiftSettings: swiftSettings
        ),
        // The cutover: a persisted, gated state machine whose every transition is an event of a
        // `cutover-<name>` stream in the store, with the gates measured from both databases.
        .target(
            name: "Cutover",
            dependencies: ["Postgres", "EventStore", "Billing", "Mapping", "Shadow", "Commands"],
            swiftSettings: swiftSettings
        ),
        // Playbooks (`playbook run|status`): a migration written down as YAML steps, each a ledgerlift
        // command, a gate, a background service or a pause, its position recorded in the store.
        .target(
            name: "Playbook",
            dependencies: ["Postgres", .product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings
        ),
        // The migration dossier (`report migration`): the cutover's stream, shadow mode's records
        // and the event store read once, rendered as one self-contained HTML page, Markdown or JSON.
        .target(
            name: "Dossier",
            dependencies: ["Postgres", "EventStore", "Billing", "Shadow", "Cutover", "TextFormats"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ledgerlift",
            dependencies: [
                "Cutover",
                "Dossier",
                "Playbook",
                "Server",
                "Commands",
                "Simulator",
                "Shadow",
                "Postgres",
                "EventStore",
                "Fixtures",
                "Billing",
                "Mapping",
                "Migration",
                "Diff",
                "TextFormats",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ledgerlift-bench",
            dependencies: [
                "Postgres",
                "EventStore",
                "Billing",
                "Diff",
                "Mapping",
                "Migration",
                "Simulator",
                "Fixtures",
                "Shadow",
                "Commands",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "Benchmarks/ledgerlift-bench",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TestSupport",
            dependencies: ["Postgres"],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PostgresTests",
            dependencies: ["Postgres", "TestSupport"],
            swiftSettings: swiftSettings
        ),
    ]
)

package.targets.append(
    .testTarget(
        name: "EventStoreTests",
        dependencies: ["EventStore", "Postgres", "TestSupport"],
        swiftSettings: swiftSettings
    )
)

package.targets.append(
    .testTarget(
        name: "FixturesTests",
        dependencies: ["Fixtures", "Postgres", "TestSupport"],
        swiftSettings: swiftSettings
    )
)

package.targets.append(
    .testTarget(
        name: "BillingTests",
        dependencies: [
            "Billing", "EventStore", "Postgres", "TestSupport", "TextFormats",
            .product(name: "PropertyBased", package: "swift-property-based"),
        ],
        swiftSettings: swiftSettings
    )
)

package.targets.append(
    .testTarget(
        name: "EndToEndTests",
        dependencies: ["EventStore", "Postgres", "TestSupport"],
        swiftSettings: swiftSettings
    )
)

package.targets.append(
    .testTarget(
        name: "MigrationTests",
        dependencies: ["Mapping", "Migration", "Diff", "Billing", "EventStore", "Postgres", "Fixtures", "TestSupport"],
        swiftSettings: swiftSettings
    )
)

package.targets.append(
    .testTarget(
        name: "CLITests",
        dependencies: [
            "ledgerlift", "Billing", "Diff", "Fixtures", "Mapping",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ],
        swiftSettings: swiftSettings
    )
)

package.targets.append(
    .testTarget(
        name: "SimulatorTests",
        dependencies: [
            "Simulator", "Postgres", "Fixtures", "Mapping", "Migration", "Diff", "Billing", "EventStore", "TestSupport",
            "Shadow", "Commands",
        ],
        swiftSettings: swiftSettings
    )
)

package.targets.append(
    .testTarget(
        name: "ShadowTests",
        dependencies: [
            "Shadow", "Mapping", "Fixtures", "Postgres", "TestSupport", "Diff", "Migration", "EventStore", "Billing",
            // Reverse sync applies what the ledger's commands append.
            "Commands",
            // LegacyTouchedRows is checked against the legacy application's own operations.
            "Simulator",
        ],
        swiftSettings: swiftSettings
    )
)

package.targets.append(
    .testTarget(
        name: "ServerTests",
        dependencies: [
            "Server", "Commands", "Billing", "EventStore", "Postgres", "Fixtures", "Mapping", "Migration", "TestSupport",
            "TextFormats", "Webhooks",
        ],
        swiftSettings: swiftSettings
    )
)

package.targets.append(
    .testTarget(
        name: "CommandsTests",
        dependencies: [
            "Commands", "Simulator", "Shadow", "Mapping", "Migration", "Fixtures", "Billing", "EventStore", "Postgres",
            "TestSupport",
        ],
        swiftSettings: swiftSettings
    )
)

package.targets.append(
    .testTarget(
        name: "WebhooksTests",
        dependencies: [
            "Webhooks", "Commands", "Billing", "EventStore", "Postgres", "TestSupport", "TextFormats",
            .product(name: "Crypto", package: "swift-crypto"),
        ],
        resources: [.copy("Fixtures")],
        swiftSettings: swiftSettings
    )
)

package.targets.append(
    .testTarget(
        name: "CutoverTests",
        dependencies: [
            "Cutover", "Shadow", "Mapping", "Migration", "Diff", "Fixtures", "Billing", "EventStore", "Postgres",
            "Commands", "TestSupport", "Playbook",
        ],
        swiftSettings: swiftSettings
    )
)

package.targets.append(
    .testTarget(
        name: "DossierTests",
        dependencies: [
            "Dossier", "Cutover", "Shadow", "Mapping", "Billing", "EventStore", "Postgres", "TestSupport", "TextFormats",
        ],
        swiftSettings: swiftSettings
    )
)
