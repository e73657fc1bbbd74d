//! Well-known CNI error codes (the SPEC "Error" table plus the reference
//! library's 999). Runtimes act on some of them (3 = no DEL needed,
//! 11 = retry), so they must be exact.

/// Config `cniVersion` is not one the plugin speaks.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// A config field is not supported; the message names key and value.
pub const UNSUPPORTED_FIELD: u32 = 2;
/// Container unknown or gone; the runtime need not call DEL.
pub const UNKNOWN_CONTAINER: u32 = 3;
/// A required `CNI_*` environment variable is missing or invalid.
pub const INVALID_ENVIRONMENT: u32 = 4;
/// Reading stdin or another I/O step failed.
pub const IO_FAILURE: u32 = 5;
/// Input (config, prevResult) could not be decoded.
pub const DECODING_FAILURE: u32 = 6;
/// The network configuration is semantically invalid.
pub const INVALID_NETWORK_CONFIG: u32 = 7;
/// Transient failure; the runtime may retry.
pub const TRY_AGAIN_LATER: u32 = 11;
/// STATUS: plugin cannot service ADD.
pub const NOT_AVAILABLE: u32 = 50;
/// STATUS: not available, and existing containers may be degraded.
pub const NOT_AVAILABLE_LIMITED_CONNECTIVITY: u32 = 51;
/// Any untyped failure (reference `ErrInternal`).
pub const INTERNAL: u32 = 999;
