//! proxy_send_local_response: records the response; the embedder sends it when the callback
//! returns (nginx cannot answer from inside a wasm call).

use wasmer::FunctionEnvMut;

use super::headers::{framing_header, valid_name, valid_value};
use crate::abi::Status;
use crate::env::HostEnv;
use crate::maps;
use crate::memory::read;
use crate::stream::LocalResponse;

pub use crate::limits::MAX_LOCAL_RESPONSE_BODY;
use crate::limits::{MAX_LOCAL_RESPONSE_DETAILS, MAX_SERIALIZED_SIZE};

#[allow(clippy::too_many_arguments)]
pub(crate) fn proxy_send_local_response(
    mut env: FunctionEnvMut<HostEnv>,
    status_code: i32,
    details: i32,
    details_len: i32,
    body: i32,
    body_len: i32,
    headers: i32,
    headers_len: i32,
    grpc_status: i32,
) -> i32 {
    match build(&env, status_code, details, details_len, body, body_len, headers, headers_len, grpc_status) {
        Ok(resp) => {
            let call = &mut env.data_mut().call;
            if call.local_response.is_some() {
                // A second answer to one request: refuse it, keep the first.
                return Status::BadArgument as i32;
            }
            call.local_response = Some(resp);
            Status::Ok as i32
        }
        Err(s) => s as i32,
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    env: &FunctionEnvMut<HostEnv>,
    status_code: i32,
    details: i32,
    details_len: i32,
    body: i32,
    body_len: i32,
    headers: i32,
    headers_len: i32,
    grpc_status: i32,
) -> Result<LocalResponse, Status> {
    let data = env.data();
    if !data.call.callback.may_send_local_response() || data.call.effective_id != data.call.context_id {
        return Err(Status::BadArgument);
    }
    if data.stream_ref_is_none() {
        return Err(Status::NotFound);
    }
    // A final status only: a 1xx would go out with a body, and nginx adds
    // `Connection: upgrade` to a 101 (Envoy's local replies are final responses too).
    if !(200..=599).contains(&status_code) {
        return Err(Status::BadArgument);
    }
    if (body_len as u32 as usize) > MAX_LOCAL_RESPONSE_BODY {
        return Err(Status::BadArgument);
    }
    if (headers_len as u32 as usize) > MAX_SERIALIZED_SIZE || (details_len as u32 as usize) > MAX_LOCAL_RESPONSE_DETAILS {
        return Err(Status::BadArgument);
    }
    let details = read(env, details, details_len)?;
    let body = read(env, body, body_len)?;
    let raw = read(env, headers, headers_len)?;
    let pairs = maps::deserialize(&raw)?;
    if !pairs.iter().all(|(k, v)| valid_name(k) && valid_value(v) && !framing_header(k)) {
        return Err(Status::BadArgument);
    }
    Ok(LocalResponse {
        status: status_code as u32,
        details,
        body,
        headers: pairs.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect(),
        grpc_status,
    })
}
