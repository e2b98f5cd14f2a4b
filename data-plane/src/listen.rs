//! The node's accept loop: one task per connection, served by hyper (HTTP/1.1 or HTTP/2), with
//! graceful shutdown. It is `axum::serve` but for one thing: each connection's task runs under
//! [`NoSelfWake`].
//!
//! Why: hyper's HTTP/1 server reads a request body into a channel whose sender is the
//! connection's own task, and the handler runs inside that same task. When the handler takes a
//! chunk, the channel wakes the sender, which is the task being polled. Tokio's multi-thread
//! scheduler treats a task woken while it runs as a yield: it goes to the back of the run queue
//! and a parked worker is woken (a `futex` call) to steal it. That is one extra wake-up and,
//! often, a move of the connection to the other core, on every request with a body.
//! [`NoSelfWake`] polls the connection again at once instead, as tokio would have a moment
//! later, without the hand-off.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use axum::Router;
use futures_util::task::AtomicWaker;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops accepting, asks every
/// connection to finish (in-flight requests and streams complete; idle keep-alive connections
/// close) and returns once all have.
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let conns = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::error!(error = %e, "accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        let svc = TowerToHyperService::new(app.clone());
        let stop = shutdown.clone();
        conns.spawn(NoSelfWake::new(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            // As axum::serve: extended CONNECT (RFC 8441, WebSockets over HTTP/2).
            builder.http2().enable_connect_protocol();
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc);
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        }));
    }
    drop(listener);
    conns.close();
    conns.wait().await;
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Not being polled.
const IDLE: u8 = 0;
/// Being polled, not woken since the poll began.
const POLLING: u8 = 1;
/// Woken while being polled: poll again before returning.
const WOKEN: u8 = 2;

/// How many times in a row a future woken while polled is polled again before the wake is
/// handed to the runtime as usual (so a future that always wakes itself still yields).
const MAX_REPOLLS: u32 = 8;

/// Runs a future, absorbing wakes that arrive while it is being polled: those mean "poll me
/// again", and it is polled again at once (up to [`MAX_REPOLLS`] times) instead of being
/// rescheduled. A wake at any other time, from any thread, goes to the task's waker as usual,
/// and a wake from another thread during a poll is never lost (it also causes a re-poll).
pub struct NoSelfWake<F> {
    inner: Pin<Box<F>>,
    shared: Arc<Shared>,
    waker: Waker,
}

struct Shared {
    state: AtomicU8,
    task: AtomicWaker,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Every wake that does not go to the task writes the state (a read-modify-write, even
        // WOKEN -> WOKEN), and the poll loop enters each poll with one too (`swap`): all
        // changes to the state are then in one order, so a wake that finds WOKEN comes before
        // the next poll begins (which therefore sees what the waker did before waking), and one
        // that comes after finds POLLING and sets WOKEN. With a plain load here and a plain
        // store there, a wake could see the previous poll's WOKEN while the next poll missed
        // its event: lost.
        loop {
            match self
                .state
                .compare_exchange(POLLING, WOKEN, Ordering::AcqRel, Ordering::Acquire)
            {
                // Being polled: the poll loop sees WOKEN and polls again.
                Ok(_) => return,
                Err(WOKEN) => {
                    if self
                        .state
                        .compare_exchange(WOKEN, WOKEN, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return;
                    }
                    // The loop moved on (to POLLING or IDLE) meanwhile: decide again.
                }
                // Not being polled: wake the task.
                Err(_) => return self.task.wake(),
            }
        }
    }
}

impl<F: Future> NoSelfWake<F> {
    pub fn new(inner: F) -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(IDLE),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(shared.clone());
        NoSelfWake {
            inner: Box::pin(inner),
            shared,
            waker,
        }
    }
}

impl<F: Future> Future for NoSelfWake<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.shared.task.register(cx.waker());
        let mut inner_cx = Context::from_waker(&this.waker);
        for _ in 0..=MAX_REPOLLS {
            this.shared.state.swap(POLLING, Ordering::AcqRel);
            if let Poll::Ready(out) = this.inner.as_mut().poll(&mut inner_cx) {
                this.shared.state.store(IDLE, Ordering::Release);
                return Poll::Ready(out);
            }
            if this
                .shared
                .state
                .compare_exchange(POLLING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Poll::Pending;
            }
            // Woken while polled: go round again.
        }
        // Still waking itself: let the runtime schedule it like any other yield.
        this.shared.state.store(IDLE, Ordering::Release);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts how often its task is woken.
    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<CountingWaker>, Waker) {
        let c = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    /// Wakes itself during each of its first `n` polls, then is ready; records its polls.
    struct SelfWaking {
        left: u32,
        polls: Arc<AtomicUsize>,
    }
    impl Future for SelfWaking {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.left == 0 {
                return Poll::Ready(());
            }
            self.left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// Polls, once, a future that wakes itself during its first `left` polls: whether it was
    /// ready, how often it was polled, how often its task was woken.
    fn poll_self_waking(left: u32) -> (bool, usize, usize) {
        let (count, waker) = counting();
        let polls = Arc::new(AtomicUsize::new(0));
        let mut f = NoSelfWake::new(SelfWaking {
            left,
            polls: polls.clone(),
        });
        let r = Pin::new(&mut f).poll(&mut Context::from_waker(&waker));
        (
            r.is_ready(),
            polls.load(Ordering::SeqCst),
            count.0.load(Ordering::SeqCst),
        )
    }

    #[test]
    fn a_wake_during_the_poll_is_a_repoll_not_a_task_wake() {
        assert_eq!(poll_self_waking(3), (true, 4, 0));
    }

    #[test]
    fn a_future_that_keeps_waking_itself_still_yields_to_the_runtime() {
        // Polled 1 + MAX_REPOLLS times, then handed back to the runtime as a yield (one wake).
        assert_eq!(poll_self_waking(100), (false, MAX_REPOLLS as usize + 1, 1));
    }

    /// Stores the waker it was polled with and is ready once told.
    struct Parked {
        slot: Arc<std::sync::Mutex<Option<Waker>>>,
        ready: Arc<std::sync::atomic::AtomicBool>,
    }
    impl Future for Parked {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.slot.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[test]
    fn a_wake_after_the_poll_wakes_the_task_once() {
        let (count, waker) = counting();
        let slot = Arc::new(std::sync::Mutex::new(None));
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut f = NoSelfWake::new(Parked {
            slot: slot.clone(),
            ready: ready.clone(),
        });
        assert!(
            Pin::new(&mut f)
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        let inner = slot.lock().unwrap().take().expect("polled");
        ready.store(true, Ordering::SeqCst);
        std::thread::spawn(move || {
            inner.wake_by_ref();
            inner.wake();
        })
        .join()
        .unwrap();
        // Woken once (the second wake finds the task already woken and not yet polled).
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(
            Pin::new(&mut f)
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
        );
    }

    /// On its first poll, has another thread wake it `wakes` times and waits for that before
    /// returning Pending; ready on the next poll.
    struct WokenFromElsewhere {
        wakes: usize,
        polls: usize,
    }
    impl Future for WokenFromElsewhere {
        type Output = usize;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            self.polls += 1;
            if self.polls > 1 {
                return Poll::Ready(self.polls);
            }
            let w = cx.waker().clone();
            let n = self.wakes;
            std::thread::spawn(move || {
                for _ in 0..n {
                    w.wake_by_ref();
                }
            })
            .join()
            .unwrap();
            Poll::Pending
        }
    }

    #[test]
    fn wakes_from_another_thread_during_the_poll_are_a_repoll() {
        for wakes in [1, 2, 5] {
            let (count, waker) = counting();
            let mut f = NoSelfWake::new(WokenFromElsewhere { wakes, polls: 0 });
            let r = Pin::new(&mut f).poll(&mut Context::from_waker(&waker));
            assert_eq!(r, Poll::Ready(2), "{wakes} wakes");
            assert_eq!(count.0.load(Ordering::SeqCst), 0, "{wakes} wakes");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wakes_from_other_threads_are_never_lost() {
        // Many tasks each wait for a wake sent from a plain thread at a random moment
        // relative to their polls; every one must finish.
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let (tx, rx) = tokio::sync::oneshot::channel::<u64>();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_micros(i % 7 * 50));
                let _ = tx.send(i);
            });
            tasks.push(tokio::spawn(NoSelfWake::new(async move {
                tokio::task::yield_now().await;
                rx.await.unwrap()
            })));
        }
        let mut sum = 0;
        for t in tasks {
            sum += tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("a wake was lost")
                .unwrap();
        }
        assert_eq!(sum, (0..200).sum::<u64>());
    }
}
