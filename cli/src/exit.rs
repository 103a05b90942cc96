//! Exit codes: 0 ok, 1 user error / not found / verification failed, 2 internal error, 130 interrupted.

use ferry_node::bundle::BundleError;
use ferry_node::ingest::IngestError;
use ferry_node::StoreError;

/// The process exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Code {
    Ok = 0,
    Failure = 1,
    Internal = 2,
}

/// Which code an error earns: trouble inside the store's own machinery is internal; everything else (bad
/// input, missing things, failed verification) is the user's to act on.
pub fn classify(e: &anyhow::Error) -> Code {
    let internal = |s: &StoreError| matches!(s, StoreError::Index(_));
    for cause in e.chain() {
        if let Some(s) = cause.downcast_ref::<StoreError>() {
            return if internal(s) {
                Code::Internal
            } else {
                Code::Failure
            };
        }
        if let Some(BundleError::Store(s)) = cause.downcast_ref::<BundleError>() {
            return if internal(s) {
                Code::Internal
            } else {
                Code::Failure
            };
        }
        if let Some(IngestError::Store(s)) = cause.downcast_ref::<IngestError>() {
            return if internal(s) {
                Code::Internal
            } else {
                Code::Failure
            };
        }
    }
    Code::Failure
}

/// The error and its causes on one line, without repeating a cause the message already includes.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out.replace('\n', " ")
}
