import Commands
import Testing

@Suite struct CodableTests {
    @Test func everyCommandHasAStableName() {
        #expect(BillingCommand.names.count == 20)
    }
}
