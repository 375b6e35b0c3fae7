package policies

// The http-wasm handler ABI (https://http-wasm.io/http-handler-abi/), as
// nocrd hosts it. A guest imports the functions below from the module
// HostModule and exports memory and the two lifecycle functions. Strings
// are (offset, length) pairs in the guest's exported memory. Functions that
// read a field take (buf, buf_limit): the field is written at buf only when
// it fits in buf_limit bytes, and its length is returned either way, so a
// guest may ask with buf_limit 0 first and then with a buffer of the right
// size.
const (
	// HostModule is the import module of every host function.
	HostModule = "http_handler"

	// ExportHandleRequest is the guest's entry point, called once per
	// decision: () -> i64 ctx_next. The low 32 bits are next: 1 lets the
	// request through (to the next policy, then the workspace or the
	// spawn), 0 stops it with the response the guest wrote (status, headers
	// and body). The high 32 bits are the context value http-wasm hosts
	// pass back to handle_response; nocrd ignores it.
	ExportHandleRequest = "handle_request"
	// ExportHandleResponse (reqCtx i32, is_error i32) is what http-wasm
	// hosts call after the response. A nocrd policy decides before the
	// workspace or the spawn answers, so nocrd never calls it; a guest may
	// export it (guests written for other http-wasm hosts do) and Load
	// checks its signature.
	ExportHandleResponse = "handle_response"
	// ExportMemory is the guest memory the host reads and writes.
	ExportMemory = "memory"
	// ExportInitialize is run once per instance when present: modules built
	// by Go with -buildmode=c-shared (WASI reactors) need it before any
	// other call.
	ExportInitialize = "_initialize"
	// ExportStart is run once per instance, as other http-wasm hosts run
	// it, when present and ExportInitialize is not: a WASI command's main
	// (TinyGo's wasi builds), which in http-wasm's TinyGo SDK installs the
	// handler; until it has run, that SDK's handle_request lets every
	// request through. It must return: one that calls proc_exit (a Go
	// guest built without -buildmode=c-shared, when main returns) ends the
	// instance, and Load refuses the module.
	ExportStart = "_start"
)

// Host functions. Each comment gives the wasm signature and the contract.
// A guest that passes memory outside its own traps, and a trap is a deny.
const (
	// FuncEnableFeatures (features i32) -> i32: asks for features and
	// returns those the host supports. nocrd supports none of the optional
	// ones (buffering, trailers): a policy decides on the request line,
	// the headers and, for admission, the buffered JSON body.
	FuncEnableFeatures = "enable_features"
	// FuncGetConfig (buf, buf_limit i32) -> len i32: the module's
	// configuration as given to nocrd (POLICY_CONFIG_<NAME>), not
	// necessarily UTF-8.
	FuncGetConfig = "get_config"
	// FuncLogEnabled (level i32) -> 0|1: whether a message at level would
	// be logged.
	FuncLogEnabled = "log_enabled"
	// FuncLog (level, msg, msg_len i32): logs a UTF-8 message through
	// nocrd's logger, tagged with the policy's name.
	FuncLog = "log"
	// FuncGetMethod (buf, buf_limit i32) -> len i32: the request method.
	FuncGetMethod = "get_method"
	// FuncSetMethod (method, method_len i32): replaces the method.
	FuncSetMethod = "set_method"
	// FuncGetURI (buf, buf_limit i32) -> len i32: the request target as
	// the workspace will see it, path and query, percent-encoded; "/" at
	// least. For admission it is AdmissionPath.
	FuncGetURI = "get_uri"
	// FuncSetURI (uri, uri_len i32): replaces the path and query sent to
	// the workspace. It must start with "/"; the workspace stays the same.
	FuncSetURI = "set_uri"
	// FuncGetProtocolVersion (buf, buf_limit i32) -> len i32: "HTTP/1.1".
	FuncGetProtocolVersion = "get_protocol_version"
	// FuncGetSourceAddr (buf, buf_limit i32) -> len i32: the client's
	// address, "ip:port".
	FuncGetSourceAddr = "get_source_addr"
	// FuncGetHeaderNames (kind, buf, buf_limit i32) -> count_len i64: every
	// header name of kind, lowercase, each followed by NUL; count in the
	// high 32 bits, the bytes needed in the low 32.
	FuncGetHeaderNames = "get_header_names"
	// FuncGetHeaderValues (kind, name, name_len, buf, buf_limit i32) ->
	// count_len i64: every value of the named header (case-insensitive),
	// each followed by NUL.
	FuncGetHeaderValues = "get_header_values"
	// FuncSetHeaderValue (kind, name, name_len, value, value_len i32):
	// replaces every value of the header.
	FuncSetHeaderValue = "set_header_value"
	// FuncAddHeaderValue (kind, name, name_len, value, value_len i32): adds
	// a value.
	FuncAddHeaderValue = "add_header_value"
	// FuncRemoveHeader (kind, name, name_len i32): removes the header.
	FuncRemoveHeader = "remove_header"
	// FuncReadBody (kind, buf, buf_limit i32) -> eof_len i64: reads the
	// next bytes of the body into buf; EOF in the high 32 bits. The
	// request body of an admission is readable, and so is the empty body
	// of a route request without one; reading the body of a route request
	// that has one traps (nocrd streams it to the workspace, and an empty
	// read would hide it from the guest), as does a zero buf_limit.
	FuncReadBody = "read_body"
	// FuncWriteBody (kind, body, body_len i32): appends to the body of the
	// response the guest is writing (the first write replaces it).
	FuncWriteBody = "write_body"
	// FuncGetStatusCode () -> i32: the status of the response the guest is
	// writing (200 until set).
	FuncGetStatusCode = "get_status_code"
	// FuncSetStatusCode (status i32): sets it; 100-599.
	FuncSetStatusCode = "set_status_code"
)

// Header kinds: the kind parameter of the header functions. Trailers are not
// supported: reading them finds none and setting them traps.
const (
	HeaderKindRequest          = 0
	HeaderKindResponse         = 1
	HeaderKindRequestTrailers  = 2
	HeaderKindResponseTrailers = 3
)

// Body kinds: the kind parameter of read_body and write_body.
const (
	BodyKindRequest  = 0
	BodyKindResponse = 1
)

// Feature flags of enable_features. nocrd reports none of them.
const (
	FeatureBufferRequest  = 1
	FeatureBufferResponse = 2
	FeatureTrailers       = 4
)

// Log levels of log and log_enabled.
const (
	LogLevelDebug = -1
	LogLevelInfo  = 0
	LogLevelWarn  = 1
	LogLevelError = 2
	LogLevelNone  = 3
)

// AdmissionPath is the URI of the synthetic request an admission policy
// sees: a POST whose JSON body describes the spawn.
const AdmissionPath = "/_nocrd/admission"
