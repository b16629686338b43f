//! The C ABI (see `include/edge_runtime.h`): load a model, open sessions, generate with a
//! callback, cancel from another thread, free. Errors are reported as NULL / negative returns
//! with a message from `edge_last_error()` (per thread). Every function catches panics.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use crate::{CancelToken, GenerateOptions, Message, Model, SamplerConfig, Session, SessionOptions};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: impl std::fmt::Display) {
    let c = CString::new(msg.to_string().replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Run `f`, turning errors and panics into the C convention (`fail`, with the message stored).
fn guard<T>(fail: T, f: impl FnOnce() -> Result<T, String>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_error(e);
            fail
        }
        Err(_) => {
            set_error("internal error (panic) in edge-runtime");
            fail
        }
    }
}

/// # Safety
/// `p` must be NULL or a NUL-terminated string valid for the call.
unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, String> {
    if p.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: non-null and NUL-terminated per the caller's contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| format!("{what} is not valid UTF-8"))
}

/// An opaque model handle.
pub struct EdgeModel(Arc<Model>);

/// An opaque session handle: the session behind a lock (one generation at a time) and the
/// cancel flag, which `edge_session_cancel` may set from any thread.
pub struct EdgeSession {
    session: Mutex<Session>,
    cancel: CancelToken,
}

/// Sampling and length settings; start from `edge_gen_params_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EdgeGenParams {
    pub max_tokens: u32,
    /// <= 0: greedy.
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub seed: u64,
}

/// Receives each UTF-8 text piece (`len` bytes, not NUL-terminated). Return 0 to continue,
/// anything else to stop.
pub type EdgeTokenCallback =
    Option<extern "C" fn(piece: *const c_char, len: usize, user: *mut c_void) -> c_int>;

/// The message of the last failed call on this thread (never NULL; empty if none).
#[no_mangle]
pub extern "C" fn edge_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

#[no_mangle]
pub extern "C" fn edge_gen_params_default() -> EdgeGenParams {
    let s = SamplerConfig::default();
    EdgeGenParams {
        max_tokens: 256,
        temperature: s.temperature,
        top_k: s.top_k as u32,
        top_p: s.top_p,
        min_p: s.min_p,
        repeat_penalty: s.repeat_penalty,
        seed: s.seed,
    }
}

/// Load a GGUF model; NULL on error.
///
/// # Safety
/// `path` must be a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn edge_model_load(path: *const c_char) -> *mut EdgeModel {
    guard(std::ptr::null_mut(), || {
        // SAFETY: forwarded caller contract.
        let path = unsafe { str_arg(path, "path") }?;
        let m = Model::load(path, Default::default()).map_err(|e| e.to_string())?;
        Ok(Box::into_raw(Box::new(EdgeModel(Arc::new(m)))))
    })
}

/// Free a model (sessions keep their own reference, so order does not matter). NULL is a no-op.
///
/// # Safety
/// `model` must come from `edge_model_load` and not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn edge_model_free(model: *mut EdgeModel) {
    if !model.is_null() {
        // SAFETY: created by Box::into_raw in edge_model_load, freed once per the contract.
        drop(unsafe { Box::from_raw(model) });
    }
}

/// Open a session (0 for `n_ctx` / `n_threads` means the defaults); NULL on error.
///
/// # Safety
/// `model` must be a live handle from `edge_model_load`.
#[no_mangle]
pub unsafe extern "C" fn edge_session_new(
    model: *const EdgeModel,
    n_ctx: u32,
    n_threads: u32,
) -> *mut EdgeSession {
    guard(std::ptr::null_mut(), || {
        // SAFETY: a live handle per the contract (shared access only).
        let m = unsafe { model.as_ref() }.ok_or("model is NULL")?;
        let mut opts = SessionOptions::default();
        if n_ctx > 0 {
            opts.n_ctx = n_ctx as usize;
        }
        if n_threads > 0 {
            opts.n_threads = n_threads as usize;
        }
        let s = Session::new(m.0.clone(), opts).map_err(|e| e.to_string())?;
        Ok(Box::into_raw(Box::new(EdgeSession {
            session: Mutex::new(s),
            cancel: CancelToken::new(),
        })))
    })
}

/// # Safety
/// `session` must come from `edge_session_new`, with no call on it still running.
#[no_mangle]
pub unsafe extern "C" fn edge_session_free(session: *mut EdgeSession) {
    if !session.is_null() {
        // SAFETY: created by Box::into_raw in edge_session_new, freed once per the contract.
        drop(unsafe { Box::from_raw(session) });
    }
}

/// Forget the conversation held in the session's cache.
///
/// # Safety
/// `session` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn edge_session_reset(session: *const EdgeSession) {
    // SAFETY: a live handle per the contract (shared access only).
    if let Some(s) = unsafe { session.as_ref() } {
        guard((), || {
            s.session
                .lock()
                .map_err(|_| "session lock poisoned")?
                .reset();
            Ok(())
        });
    }
}

/// Cancel the generation running on `session` (callable from any thread; the generation stops
/// before its next token).
///
/// # Safety
/// `session` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn edge_session_cancel(session: *const EdgeSession) {
    // SAFETY: a live handle per the contract; only the atomic flag is touched.
    if let Some(s) = unsafe { session.as_ref() } {
        s.cancel.cancel();
    }
}

/// Lock the session for one generation and build its options (clearing a stale cancel).
fn begin<'s>(
    s: &'s EdgeSession,
    params: Option<&EdgeGenParams>,
) -> Result<(std::sync::MutexGuard<'s, Session>, GenerateOptions), String> {
    let opts = options(params, &s.cancel);
    let sess = s.session.lock().map_err(|_| "session lock poisoned")?;
    Ok((sess, opts))
}

fn options(p: Option<&EdgeGenParams>, cancel: &CancelToken) -> GenerateOptions {
    let p = p.copied().unwrap_or_else(|| edge_gen_params_default());
    cancel.reset();
    GenerateOptions {
        max_tokens: p.max_tokens as usize,
        sampler: SamplerConfig {
            temperature: p.temperature,
            top_k: p.top_k as usize,
            top_p: p.top_p,
            min_p: p.min_p,
            repeat_penalty: p.repeat_penalty,
            seed: p.seed,
            ..SamplerConfig::default()
        },
        stop: Vec::new(),
        cancel: cancel.clone(),
        ..Default::default()
    }
}

fn stream(
    gen: crate::Generation<'_>,
    cb: EdgeTokenCallback,
    user: *mut c_void,
) -> Result<c_int, String> {
    let mut n = 0;
    for piece in gen {
        let piece = piece.map_err(|e| e.to_string())?;
        n += 1;
        if let Some(cb) = cb {
            if cb(piece.text.as_ptr().cast(), piece.text.len(), user) != 0 {
                break;
            }
        }
    }
    Ok(n)
}

/// Chat: render `n` messages (`roles[i]`, `contents[i]`) with the model's template and stream
/// the reply through `cb`. Returns the number of pieces, or -1 on error. A later call with the
/// conversation extended prefills only the new tokens.
///
/// # Safety
/// `session` must be live; `roles` and `contents` must point to `n` NUL-terminated strings;
/// `params` may be NULL (defaults).
#[no_mangle]
pub unsafe extern "C" fn edge_session_chat(
    session: *const EdgeSession,
    roles: *const *const c_char,
    contents: *const *const c_char,
    n: usize,
    params: *const EdgeGenParams,
    cb: EdgeTokenCallback,
    user: *mut c_void,
) -> c_int {
    guard(-1, || {
        // SAFETY: a live handle per the contract.
        let s = unsafe { session.as_ref() }.ok_or("session is NULL")?;
        if n > 0 && (roles.is_null() || contents.is_null()) {
            return Err("roles/contents is NULL".into());
        }
        let mut msgs = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: `roles`/`contents` hold `n` valid string pointers per the contract.
            let (r, c) = unsafe { (*roles.add(i), *contents.add(i)) };
            // SAFETY: NUL-terminated per the contract.
            let (r, c) = unsafe { (str_arg(r, "role")?, str_arg(c, "content")?) };
            msgs.push(Message::new(r, c));
        }
        // SAFETY: NULL or a valid pointer per the contract.
        let (mut sess, opts) = begin(s, unsafe { params.as_ref() })?;
        let gen = sess.chat(&msgs, opts).map_err(|e| e.to_string())?;
        stream(gen, cb, user)
    })
}

/// Plain-text completion of `prompt`; like `edge_session_chat` otherwise.
///
/// # Safety
/// `session` must be live and `prompt` NUL-terminated; `params` may be NULL.
#[no_mangle]
pub unsafe extern "C" fn edge_session_complete(
    session: *const EdgeSession,
    prompt: *const c_char,
    params: *const EdgeGenParams,
    cb: EdgeTokenCallback,
    user: *mut c_void,
) -> c_int {
    guard(-1, || {
        // SAFETY: a live handle per the contract.
        let s = unsafe { session.as_ref() }.ok_or("session is NULL")?;
        // SAFETY: NUL-terminated per the contract.
        let prompt = unsafe { str_arg(prompt, "prompt") }?;
        // SAFETY: NULL or a valid pointer per the contract.
        let (mut sess, opts) = begin(s, unsafe { params.as_ref() })?;
        let gen = sess.complete(prompt, opts).map_err(|e| e.to_string())?;
        stream(gen, cb, user)
    })
}
