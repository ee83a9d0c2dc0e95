//! `LoopPoller`: a session's connection read and written on the JavaScript
//! thread, from Node's own event loop (libuv).
//!
//! The socket is watched with a `uv_poll_t`. When it is readable, the
//! replies and tasks are read, decoded and handed to JavaScript in one call
//! on the thread that runs it; frames are written from that thread too. So
//! no other thread is woken between the socket and JavaScript, either way.
//! Other threads (where connecting happens) reach the loop through a
//! `uv_async_t`: to have a new connection watched, or output written.
//!
//! The handles are unreferenced, like the threadsafe callbacks before them:
//! the facade keeps the process alive while calls are outstanding.

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::{Arc, Mutex};

use edgefc_core::client::{Arrived, Client, Poller};
use edgefc_core::proto::{Reply, Task};
use napi::bindgen_prelude::Function;
use napi::{sys, Env, JsValue};

use crate::records::{Record, RecordWriter, ARENA_BYTES};

/// libuv as Node exports it to addons. The handles must live on Node's own
/// loop, so this declares the few functions used rather than linking a
/// libuv of its own (which is what the `-sys` crates do).
mod uv {
    use std::ffi::{c_int, c_void};

    pub const ASYNC: c_int = 1;
    pub const POLL: c_int = 8;
    pub const READABLE: c_int = 1;
    pub const WRITABLE: c_int = 2;

    pub type Handle = c_void;
    pub type PollCallback = unsafe extern "C" fn(*mut Handle, c_int, c_int);
    pub type Callback = unsafe extern "C" fn(*mut Handle);

    extern "C" {
        pub fn uv_handle_size(kind: c_int) -> usize;
        pub fn uv_handle_set_data(handle: *mut Handle, data: *mut c_void);
        pub fn uv_handle_get_data(handle: *const Handle) -> *mut c_void;
        pub fn uv_poll_init(event_loop: *mut c_void, handle: *mut Handle, fd: c_int) -> c_int;
        pub fn uv_poll_start(handle: *mut Handle, events: c_int, callback: PollCallback) -> c_int;
        pub fn uv_async_init(event_loop: *mut c_void, handle: *mut Handle, callback: Callback) -> c_int;
        pub fn uv_async_send(handle: *mut Handle) -> c_int;
        pub fn uv_close(handle: *mut Handle, callback: Callback);
        pub fn uv_unref(handle: *mut Handle);
    }
}

/// A libuv handle pointer, sent across threads only to `uv_async_send`,
/// which libuv allows from any thread.
struct WakeHandle(*mut uv::Handle);

// SAFETY: only `uv_async_send` is called through it off the loop's thread,
// and only while the inbox lock says the handle is open.
unsafe impl Send for WakeHandle {}

/// What other threads leave for the loop.
#[derive(Default)]
struct Inbox {
    to_watch: Vec<Arc<Client>>,
    to_write: Vec<u64>,
    /// Outcomes settled off the loop (requests that could not connect).
    replies: Vec<(u64, edgefc_core::Result<Reply>)>,
    /// `None` once the loop side is closed: then nothing more is accepted.
    wake: Option<WakeHandle>,
}

/// The [`Poller`] the engine calls, from any thread.
pub struct LoopPoller {
    inbox: Mutex<Inbox>,
}

impl LoopPoller {
    /// False once the loop side is closed: nothing is left then.
    fn post(&self, leave: impl FnOnce(&mut Inbox)) -> bool {
        let mut inbox = self.inbox.lock().unwrap();
        let Some(wake) = inbox.wake.as_ref().map(|wake| wake.0) else {
            return false;
        };
        leave(&mut inbox);
        // SAFETY: the handle is open while `wake` is set, and the lock is held.
        unsafe { uv::uv_async_send(wake) };
        true
    }
}

impl Poller for LoopPoller {
    fn watch(&self, client: Arc<Client>) {
        let watched = client.clone();
        if !self.post(|inbox| inbox.to_watch.push(watched)) {
            // Its thread has ended: nothing would ever read this connection.
            client.abandon();
        }
    }

    fn write_soon(&self, client_id: u64) {
        self.post(|inbox| inbox.to_write.push(client_id));
    }
}

impl LoopPoller {
    /// Hands `replies`, settled on another thread, to the loop's
    /// `onCompletions`; dropped once the loop side is closed, as nothing
    /// is left there to settle.
    pub fn complete_later(&self, replies: Vec<(u64, edgefc_core::Result<Reply>)>) {
        self.post(|inbox| inbox.replies.extend(replies));
    }
}

/// Where what a connection reads goes, on the JavaScript thread.
pub struct Callbacks<'a> {
    pub on_completions: &'a Function<'a>,
    /// A worker's: its function's tasks, and a count of 0 once the connection ended.
    pub on_tasks: Option<&'a Function<'a>>,
}

/// The loop's side: lives on the JavaScript thread, reached through the
/// handles' data pointers. Freed once its last handle is closed.
struct LoopSide {
    env: sys::napi_env,
    event_loop: *mut c_void,
    context: sys::napi_async_context,
    on_completions: sys::napi_ref,
    on_tasks: Option<sys::napi_ref>,
    /// The Buffer records are handed over in (`records`), and its bytes,
    /// which stay where they are while the reference holds it.
    arena: sys::napi_ref,
    arena_bytes: *mut u8,
    /// What the callbacks are called on: the global object.
    receiver: sys::napi_ref,
    poller: Arc<LoopPoller>,
    wake: *mut uv::Handle,
    watched: HashMap<u64, Watched>,
    /// Handles not yet closed.
    open_handles: usize,
    closed: bool,
    /// Whether the `LoopHandle` still exists. The side is freed once it is
    /// closed, its handles are closed and its `LoopHandle` is gone.
    held: bool,
}

struct Watched {
    client: Arc<Client>,
    poll: *mut uv::Handle,
    /// Watching for writability too: output is waiting.
    writing: bool,
}

/// A NativeSession's hold on its loop side; dropping it (or the environment
/// ending) stops every watch.
pub struct LoopHandle {
    side: *mut LoopSide,
}

// SAFETY: a LoopHandle is made and dropped on its JavaScript thread (the
// NativeSession's constructor and finalizer) and never used in between;
// these only let the NativeSession that holds it be borrowed by its async
// methods.
unsafe impl Send for LoopHandle {}
unsafe impl Sync for LoopHandle {}

fn check(status: sys::napi_status, what: &str) -> edgefc_core::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(cannot(what))
    }
}

fn cannot(what: &str) -> edgefc_core::Error {
    edgefc_core::Error::new(edgefc_core::ErrorCode::Internal, format!("edgefc could not {what}"))
}

/// What a handle's data points to: its side, and for a poll handle the
/// client it watches.
struct HandleData {
    side: *mut LoopSide,
    client_id: u64,
}

/// A zeroed libuv handle of `kind` whose data is `side` and `client_id`;
/// both are freed in `on_handle_closed`.
unsafe fn new_handle(kind: c_int, side: *mut LoopSide, client_id: u64) -> *mut uv::Handle {
    let handle = libc::calloc(1, uv::uv_handle_size(kind));
    if !handle.is_null() {
        uv::uv_handle_set_data(handle, Box::into_raw(Box::new(HandleData { side, client_id })).cast());
    }
    handle
}

/// Frees a handle made by `new_handle` that was never initialised.
unsafe fn free_handle(handle: *mut uv::Handle) {
    drop(Box::from_raw(uv::uv_handle_get_data(handle).cast::<HandleData>()));
    libc::free(handle);
}

unsafe fn data_of(handle: *const uv::Handle) -> (*mut LoopSide, u64) {
    let data = &*uv::uv_handle_get_data(handle).cast::<HandleData>();
    (data.side, data.client_id)
}

impl LoopHandle {
    /// Sets up the loop side on the JavaScript thread of `env`.
    pub fn start(env: &Env, callbacks: Callbacks<'_>) -> edgefc_core::Result<(Arc<LoopPoller>, LoopHandle)> {
        let env = env.raw();
        let mut event_loop = ptr::null_mut();
        // SAFETY: `env` is the live environment of the calling (JavaScript) thread.
        check(unsafe { sys::napi_get_uv_event_loop(env, &mut event_loop) }, "find the event loop")?;
        let poller = Arc::new(LoopPoller { inbox: Mutex::new(Inbox::default()) });
        let side = Box::into_raw(Box::new(LoopSide {
            env,
            event_loop: event_loop.cast(),
            context: ptr::null_mut(),
            on_completions: ptr::null_mut(),
            on_tasks: None,
            arena: ptr::null_mut(),
            arena_bytes: ptr::null_mut(),
            receiver: ptr::null_mut(),
            poller: poller.clone(),
            wake: ptr::null_mut(),
            watched: HashMap::new(),
            open_handles: 0,
            closed: false,
            held: true,
        }));
        // SAFETY: `side` was just made and nothing else has it yet.
        if let Err(error) = unsafe { keep_callbacks(&mut *side, callbacks) } {
            // SAFETY: as above; what `keep_callbacks` made goes with it.
            unsafe {
                release_references(&*side);
                drop(Box::from_raw(side));
            }
            return Err(error);
        }
        // SAFETY: a fresh handle on this thread's loop; `side` outlives it
        // (it is freed after its last handle is closed).
        unsafe {
            let wake = new_handle(uv::ASYNC, side, 0);
            if wake.is_null() || uv::uv_async_init(event_loop.cast(), wake, on_wake) != 0 {
                if !wake.is_null() {
                    free_handle(wake);
                }
                release_references(&*side);
                drop(Box::from_raw(side));
                return Err(cannot("watch its connection (uv_async_init)"));
            }
            uv::uv_unref(wake);
            (*side).wake = wake;
            (*side).open_handles = 1;
            if sys::napi_add_env_cleanup_hook(env, Some(on_env_cleanup), side.cast()) != sys::Status::napi_ok {
                (*side).held = false;
                close(side);
                return Err(cannot("watch its connection (napi_add_env_cleanup_hook)"));
            }
            poller.inbox.lock().unwrap().wake = Some(WakeHandle(wake));
        }
        Ok((poller, LoopHandle { side }))
    }
}

impl Drop for LoopHandle {
    fn drop(&mut self) {
        // SAFETY: dropped on the JavaScript thread (a finalizer); the side
        // lives until `close` has run and its handles are closed.
        unsafe {
            (*self.side).held = false;
            if (*self.side).closed {
                free_if_done(self.side);
            } else {
                sys::napi_remove_env_cleanup_hook((*self.side).env, Some(on_env_cleanup), self.side.cast());
                close(self.side);
            }
        }
    }
}

unsafe extern "C" fn on_env_cleanup(side: *mut c_void) {
    close(side.cast());
}

/// Keeps the JavaScript callbacks (references) and the async context that
/// calls them, in `side`; what was made before a failure stays there for
/// `release_references`.
unsafe fn keep_callbacks(side: &mut LoopSide, callbacks: Callbacks<'_>) -> edgefc_core::Result<()> {
    let env = side.env;
    let reference = |function: &Function<'_>| -> edgefc_core::Result<sys::napi_ref> {
        let mut reference = ptr::null_mut();
        check(sys::napi_create_reference(env, function.raw(), 1, &mut reference), "keep a callback")?;
        Ok(reference)
    };
    side.on_completions = reference(callbacks.on_completions)?;
    if let Some(on_tasks) = callbacks.on_tasks {
        side.on_tasks = Some(reference(on_tasks)?);
    }
    let mut arena = ptr::null_mut();
    let mut bytes = ptr::null_mut();
    check(sys::napi_create_buffer(env, ARENA_BYTES, &mut bytes, &mut arena), "allocate its record buffer")?;
    check(sys::napi_create_reference(env, arena, 1, &mut side.arena), "keep its record buffer")?;
    side.arena_bytes = bytes.cast();
    let mut global = ptr::null_mut();
    check(sys::napi_get_global(env, &mut global), "find the global object")?;
    check(sys::napi_create_reference(env, global, 1, &mut side.receiver), "keep the global object")?;
    let mut resource = ptr::null_mut();
    let mut name = ptr::null_mut();
    check(sys::napi_create_object(env, &mut resource), "create an async resource")?;
    check(sys::napi_create_string_utf8(env, c"edgefc".as_ptr(), 6, &mut name), "name an async resource")?;
    check(sys::napi_async_init(env, resource, name, &mut side.context), "create an async context")
}

/// Releases what `keep_callbacks` made (as much of it as it made).
unsafe fn release_references(side: &LoopSide) {
    if !side.on_completions.is_null() {
        sys::napi_delete_reference(side.env, side.on_completions);
    }
    if let Some(on_tasks) = side.on_tasks {
        sys::napi_delete_reference(side.env, on_tasks);
    }
    if !side.arena.is_null() {
        sys::napi_delete_reference(side.env, side.arena);
    }
    if !side.receiver.is_null() {
        sys::napi_delete_reference(side.env, side.receiver);
    }
    if !side.context.is_null() {
        sys::napi_async_destroy(side.env, side.context);
    }
}

/// Stops every watch and closes the handles; the side is freed once they are.
unsafe fn close(side_ptr: *mut LoopSide) {
    let side = &mut *side_ptr;
    if side.closed {
        return;
    }
    side.closed = true;
    let waiting = {
        let mut inbox = side.poller.inbox.lock().unwrap();
        inbox.wake = None;
        inbox.to_write.clear();
        inbox.replies.clear();
        std::mem::take(&mut inbox.to_watch)
    };
    // Nothing will read these connections any more: they end now, and the
    // calls still waiting on them fail instead of waiting forever.
    for client in waiting {
        client.abandon();
    }
    for (_, watched) in side.watched.drain() {
        watched.client.abandon();
        uv::uv_close(watched.poll, on_handle_closed);
    }
    uv::uv_close(side.wake, on_handle_closed);
    // During the environment's teardown the references must not outlive it.
    release_references(side);
}

unsafe extern "C" fn on_handle_closed(handle: *mut uv::Handle) {
    let (side_ptr, _) = data_of(handle);
    free_handle(handle);
    (*side_ptr).open_handles -= 1;
    free_if_done(side_ptr);
}

unsafe fn free_if_done(side_ptr: *mut LoopSide) {
    let side = &*side_ptr;
    if side.closed && side.open_handles == 0 && !side.held {
        drop(Box::from_raw(side_ptr));
    }
}

unsafe extern "C" fn on_wake(handle: *mut uv::Handle) {
    let (side_ptr, _) = data_of(handle);
    let (to_watch, to_write, replies) = {
        let side = &*side_ptr;
        let mut inbox = side.poller.inbox.lock().unwrap();
        (std::mem::take(&mut inbox.to_watch), std::mem::take(&mut inbox.to_write), std::mem::take(&mut inbox.replies))
    };
    if !replies.is_empty() {
        hand_over(side_ptr, (*side_ptr).on_completions, replies);
    }
    for client in to_watch {
        start_watching(side_ptr, client);
    }
    for client_id in to_write {
        if (*side_ptr).closed {
            return;
        }
        write(side_ptr, client_id);
    }
}

unsafe fn start_watching(side_ptr: *mut LoopSide, client: Arc<Client>) {
    let Some(fd) = client.fd() else {
        return;
    };
    let client_id = client.id();
    let watching = {
        let side = &mut *side_ptr;
        if side.closed {
            client.abandon();
            return;
        }
        let poll = new_handle(uv::POLL, side_ptr, client_id);
        if poll.is_null() {
            false
        } else if uv::uv_poll_init(side.event_loop, poll, fd) != 0 {
            free_handle(poll);
            false
        } else if uv::uv_poll_start(poll, uv::READABLE, on_poll) != 0 {
            side.open_handles += 1;
            uv::uv_close(poll, on_handle_closed);
            false
        } else {
            uv::uv_unref(poll);
            side.open_handles += 1;
            side.watched.insert(client_id, Watched { client: client.clone(), poll, writing: false });
            true
        }
    };
    if watching {
        // Frames that came with the welcome are already read: route them
        // now, as the socket may not become readable again.
        read(side_ptr, client_id);
    } else {
        // Unwatched, nothing would ever be read: the connection ends, its
        // calls fail, and the next call connects again.
        client.abandon();
    }
}

unsafe extern "C" fn on_poll(handle: *mut uv::Handle, status: c_int, events: c_int) {
    let (side_ptr, client_id) = data_of(handle);
    if status < 0 {
        // libuv has stopped the handle. The connection is shut down here,
        // and watched for readability again: what is still unread comes
        // first, then the end, as for a peer that closed.
        let side = &mut *side_ptr;
        if let Some(watched) = side.watched.get_mut(&client_id) {
            watched.client.close();
            watched.writing = false;
            uv::uv_poll_start(watched.poll, uv::READABLE, on_poll);
        }
        read(side_ptr, client_id);
        return;
    }
    if events & uv::WRITABLE != 0 {
        write(side_ptr, client_id);
    }
    if events & uv::READABLE != 0 {
        read(side_ptr, client_id);
    }
}

/// Writes what the socket takes, and watches for writability while output remains.
unsafe fn write(side_ptr: *mut LoopSide, client_id: u64) {
    let side = &mut *side_ptr;
    let Some(watched) = side.watched.get_mut(&client_id) else {
        return;
    };
    let writing = watched.client.write_ready();
    if writing != watched.writing {
        watched.writing = writing;
        let events = if writing { uv::READABLE | uv::WRITABLE } else { uv::READABLE };
        uv::uv_poll_start(watched.poll, events, on_poll);
    }
}

unsafe fn read(side_ptr: *mut LoopSide, client_id: u64) {
    let Some(client) = (*side_ptr).watched.get(&client_id).map(|watched| watched.client.clone()) else {
        return;
    };
    let arrived = client.read_ready();
    if arrived.ended {
        let side = &mut *side_ptr;
        if let Some(watched) = side.watched.remove(&client_id) {
            uv::uv_close(watched.poll, on_handle_closed);
        }
    }
    deliver(side_ptr, arrived);
}

/// Hands what arrived to JavaScript: the replies, then the tasks, then
/// (to a worker) no task at all if the connection ended.
unsafe fn deliver(side_ptr: *mut LoopSide, arrived: Arrived) {
    let Arrived { replies, tasks, ended } = arrived;
    if !replies.is_empty() {
        hand_over(side_ptr, (*side_ptr).on_completions, replies);
    }
    if let Some(on_tasks) = (*side_ptr).on_tasks {
        if !tasks.is_empty() {
            hand_over(side_ptr, on_tasks, tasks);
        }
        if ended {
            hand_over(side_ptr, on_tasks, Vec::<Task>::new());
        }
    }
}

/// Calls `callback(arena, count, lent)` with `records` written into the
/// shared buffer (`records`), as often as it takes to fit them; with no
/// record, once with a count of 0.
unsafe fn hand_over<R: Record>(side_ptr: *mut LoopSide, callback: sys::napi_ref, records: Vec<R>) {
    let side = &*side_ptr;
    if side.closed {
        return;
    }
    let env = side.env;
    let mut scope = ptr::null_mut();
    if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
        return;
    }
    let mut function = ptr::null_mut();
    let mut arena = ptr::null_mut();
    let mut receiver = ptr::null_mut();
    let ready = sys::napi_get_reference_value(env, callback, &mut function) == sys::Status::napi_ok
        && !function.is_null()
        && sys::napi_get_reference_value(env, side.arena, &mut arena) == sys::Status::napi_ok
        && !arena.is_null()
        && sys::napi_get_reference_value(env, side.receiver, &mut receiver) == sys::Status::napi_ok
        && !receiver.is_null();
    if ready {
        // SAFETY: the reference (and `arena`, a handle in this scope) keeps
        // the Buffer, and so its bytes, alive; only this thread writes them.
        let mut writer = RecordWriter::new(env, side.arena_bytes, ARENA_BYTES);
        let written = || -> napi::Result<()> {
            let empty = records.is_empty();
            for record in records {
                if !writer.has_room_for(&record) {
                    call(side_ptr, receiver, function, arena, &mut writer)?;
                }
                writer.push(record)?;
            }
            if empty || writer.count() > 0 {
                call(side_ptr, receiver, function, arena, &mut writer)?;
            }
            Ok(())
        };
        if let Err(error) = written() {
            let mut message = ptr::null_mut();
            let text = format!("edgefc could not hand a reply to JavaScript: {error}");
            sys::napi_create_string_utf8(env, text.as_ptr().cast(), text.len() as isize, &mut message);
            let mut js_error = ptr::null_mut();
            sys::napi_create_error(env, ptr::null_mut(), message, &mut js_error);
            sys::napi_fatal_exception(env, js_error);
        }
    }
    sys::napi_close_handle_scope(env, scope);
}

/// Calls `function(arena, count, lent)` with what `writer` holds, the way
/// Node calls back from its own I/O: in a callback scope, so that the
/// promises it settles run their reactions (microtasks, `process.nextTick`)
/// before the loop goes on. What it throws becomes an uncaught exception,
/// as from any event handler.
unsafe fn call(
    side_ptr: *mut LoopSide,
    receiver: sys::napi_value,
    function: sys::napi_value,
    arena: sys::napi_value,
    writer: &mut RecordWriter,
) -> napi::Result<()> {
    let side = &*side_ptr;
    let env = side.env;
    let (count, lent) = writer.take()?;
    if side.closed {
        return Ok(());
    }
    let mut count_value = ptr::null_mut();
    if sys::napi_create_uint32(env, count, &mut count_value) != sys::Status::napi_ok {
        return Err(napi::Error::from_reason("cannot call back into JavaScript"));
    }
    let arguments = [arena, count_value, lent];
    let mut result = ptr::null_mut();
    let status = sys::napi_make_callback(env, side.context, receiver, function, 3, arguments.as_ptr(), &mut result);
    if status != sys::Status::napi_ok {
        rethrow(env);
    }
    Ok(())
}

/// Takes what a callback threw off the environment (where it would be met
/// by the next N-API call, wherever that is) and raises it as an uncaught
/// exception.
unsafe fn rethrow(env: sys::napi_env) {
    let mut error = ptr::null_mut();
    let mut kind = 0;
    if sys::napi_get_and_clear_last_exception(env, &mut error) == sys::Status::napi_ok
        && !error.is_null()
        && sys::napi_typeof(env, error, &mut kind) == sys::Status::napi_ok
        && kind != sys::ValueType::napi_undefined
    {
        sys::napi_fatal_exception(env, error);
    }
}
