// Package guest is the Go SDK for nocrd policies: it wraps the http-wasm
// host functions (see package policies' abi.go) for guests built with the
// standard Go toolchain:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o policy.wasm .
//
// A policy's main package registers its decision in init with Handle; the
// SDK exports handle_request. The functions here are only defined for
// GOOS=wasip1.
package guest
