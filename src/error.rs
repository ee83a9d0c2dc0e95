//! The one place where an engine error becomes a JavaScript one.
//!
//! Every failure reaches JavaScript as an `Error` whose `code` is the
//! engine's stable code (`ERR_TIMEOUT`, ...) and whose `message` is the
//! engine's message, in one of two ways:
//! - a method throws it (synchronous) or rejects with it (asynchronous);
//! - a reply delivered in a batch carries its code and message as a
//!   failed record (`records`), since a batch cannot throw; the facade
//!   makes the same error of it (`lib/core/errors.js`).

use std::future::Future;

use edgefc_core::Error;
use napi::bindgen_prelude::{PromiseRaw, ToNapiValue};
use napi::{Env, JsError};

/// A stable error code, as the `code` of a thrown JavaScript error.
pub struct Code(&'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

/// What a throwing method returns.
pub type Result<T> = napi::Result<T, Code>;

/// The error a method throws for `error`.
pub fn to_js(error: Error) -> napi::Error<Code> {
    napi::Error::new(Code(error.code.as_str()), error.message)
}

/// Runs `work` on the addon's runtime and returns a Promise of its value,
/// converted on the JavaScript thread by `convert`, or rejected with the
/// error [`to_js`] makes of its failure.
pub fn promise<T, V>(
    env: &Env,
    work: impl Future<Output = edgefc_core::Result<T>> + Send + 'static,
    convert: impl FnOnce(T) -> V + 'static,
) -> napi::Result<PromiseRaw<'_, V>>
where
    T: Send + 'static,
    V: ToNapiValue,
{
    env.spawn_future_with_callback(async move { Ok(work.await) }, move |env, outcome| match outcome {
        Ok(value) => Ok(convert(value)),
        // Rejecting with a JS error built here keeps its `code`: the napi
        // layer rethrows the referenced object as it is.
        Err(error) => Err(napi::Error::from(JsError::from(to_js(error)).into_unknown(*env))),
    })
}
