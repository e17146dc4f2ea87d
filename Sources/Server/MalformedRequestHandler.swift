import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import TextFormats

/// Answers a request the HTTP parser refuses (a request line or headers over the parser's
/// limits, such as a 100,000-character path; bytes that are not HTTP) with a problem document.
///
/// Such a request never reaches the router — there is no request to route — and Hummingbird
/// answers it with a bare 400 and an empty body. Clients parse one error shape, so this handler,
/// the first after the HTTP codec, answers first: 400 `malformed_request` (431
/// `request_header_fields_too_large` for a head over the limits), `Connection: close`, then it
/// closes the connection as Hummingbird would. Nothing of the request is quoted.
final class MalformedRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    private var answered = false

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parseError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        guard !answered else { return }
        answered = true
        let problem = Self.problem(for: parseError)
        let body = ByteBuffer(string: problem.json.rendered)
        var head = HTTPResponse(status: problem.status)
        head.headerFields[.contentType] = Problem.contentType
        head.headerFields[.contentLength] = String(body.readableBytes)
        head.headerFields[.connection] = "close"
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        // The close is on the channel's event loop, after the flush: the response goes out first.
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.close(promise: nil)
    }

    static func problem(for error: HTTPParserError) -> Problem {
        switch error {
        case .headerOverflow:
            Problem(
                .badRequest, code: "request_head_too_large", title: "Request line or headers too large",
                detail: "the request line (method and path) or a header is longer than the server accepts (80 KiB)")
        default:
            Problem(
                .badRequest, code: "malformed_request", title: "Malformed HTTP request",
                detail: "the request is not well-formed HTTP/1.1")
        }
    }
}
