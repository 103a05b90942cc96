//! Sessions, limits, stalls and cancels, on a temporary directory.

use super::*;
use axum::body::Bytes;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;

/// The defaults without the free-space check (what the disk holds is not the test's to choose).
fn limits() -> UploadLimits {
    UploadLimits {
        min_free_bytes: 0,
        ..UploadLimits::default()
    }
}

fn uploads(limits: UploadLimits) -> (tempfile::TempDir, Arc<Uploads>) {
    let dir = tempfile::tempdir().unwrap();
    let u = Uploads::new(dir.path().join("uploads"), limits).unwrap();
    (dir, Arc::new(u))
}

/// A body fed by hand: it stalls while nothing is sent and the sender lives.
fn body() -> (mpsc::Sender<Result<Bytes, std::io::Error>>, Body) {
    let (tx, rx) = mpsc::channel(8);
    (tx, Body::from_stream(ReceiverStream::new(rx)))
}

fn bytes(n: usize, b: u8) -> Body {
    Body::from(vec![b; n])
}

fn held(u: &Uploads) -> u64 {
    u.spool.held()
}

fn file_len(s: &Session) -> Option<u64> {
    std::fs::metadata(&s.path).ok().map(|m| m.len())
}

fn assert_error(e: &ApiError, status: u16, code: &str, says: &str) {
    assert_eq!(e.status().as_u16(), status, "{e:?}");
    assert_eq!(e.code(), code, "{e:?}");
    assert!(
        format!("{e:?}").contains(says),
        "{e:?} does not say {says:?}"
    );
}

/// A session holding 10 bytes, and a body that sends 1000 more then stalls while its sender lives.
async fn ten_bytes_then_a_stall(
    u: &Uploads,
) -> (
    Arc<Session>,
    mpsc::Sender<Result<Bytes, std::io::Error>>,
    Body,
) {
    let s = u.start("r").await.unwrap();
    u.append(&s, bytes(10, 1), None, None).await.unwrap();
    let (tx, stalled) = body();
    tx.send(Ok(Bytes::from(vec![2; 1000]))).await.unwrap();
    (s, tx, stalled)
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// `append` of `body` run as a task, returned once its chunk holds the session.
async fn in_flight(
    u: &Arc<Uploads>,
    s: &Arc<Session>,
    body: Body,
) -> tokio::task::JoinHandle<Result<(), ApiError>> {
    let task = tokio::spawn({
        let (u, s) = (u.clone(), s.clone());
        async move { u.append(&s, body, None, None).await }
    });
    while s.idle(Instant::now()).is_some() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task
}

#[tokio::test]
async fn the_spool_cap_refuses_a_chunk_and_the_upload_stays_usable() {
    let (_dir, u) = uploads(UploadLimits {
        max_spool_bytes: 100,
        evict_after_secs: 3600,
        ..limits()
    });
    let a = u.start("r").await.unwrap();
    u.append(&a, bytes(60, 1), Some(60), None).await.unwrap();
    let b = u.start("r").await.unwrap();

    // Declared too big for what is left: refused before a byte is read (this body would stall).
    let (_tx, stalled) = body();
    let e = timeout(
        Duration::from_secs(5),
        u.append(&b, stalled, Some(50), None),
    )
    .await
    .expect("a declared chunk was read before it was refused")
    .unwrap_err();
    assert_error(&e, 413, "SIZE_INVALID", "uploads.max_spool_bytes");
    assert_eq!(held(&u), 60);

    // Streamed: refused when the frame that would pass the cap arrives, and cut back.
    let (tx, streamed) = body();
    tx.send(Ok(Bytes::from(vec![2; 30]))).await.unwrap();
    tx.send(Ok(Bytes::from(vec![2; 30]))).await.unwrap();
    let e = u.append(&b, streamed, None, None).await.unwrap_err();
    assert_error(&e, 413, "SIZE_INVALID", "cap of 100 bytes");
    assert!(b.is_open(), "a refused chunk ended the upload");
    assert_eq!(
        (b.range(), file_len(&b), held(&u)),
        ("0-0".into(), Some(0), 60)
    );

    // A chunk that fits is taken; a chunk bigger than the whole spool is refused as such.
    u.append(&b, bytes(40, 3), None, None).await.unwrap();
    assert_eq!((b.range(), held(&u)), ("0-39".into(), 100));
    let e = u
        .append(&b, bytes(1, 3), Some(101), None)
        .await
        .unwrap_err();
    assert_error(&e, 413, "SIZE_INVALID", "whole upload spool");

    // Ending uploads gives their bytes back.
    u.cancel(&a).await.unwrap();
    assert_eq!((file_len(&a), held(&u)), (None, 40));
    let f = u.finish(&b).await.unwrap();
    assert_eq!(f.size, 40);
    assert_eq!(f.digest.to_string(), sha256(&[3; 40]));
    f.discard().await;
    assert_eq!((file_len(&b), held(&u)), (None, 0));
    assert!(u.sessions().is_empty());
}

#[tokio::test]
async fn a_full_spool_evicts_idle_uploads_first() {
    let (_dir, u) = uploads(UploadLimits {
        max_spool_bytes: 100,
        evict_after_secs: 0,
        ..limits()
    });
    let a = u.start("r").await.unwrap();
    u.append(&a, bytes(80, 1), None, None).await.unwrap();
    let b = u.start("r").await.unwrap();
    u.append(&b, bytes(50, 2), None, None).await.unwrap();
    assert_error(
        &u.get("r", &a.id).err().unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "evicted",
    );
    assert_eq!((b.range(), held(&u)), ("0-49".into(), 50));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(file_len(&a), None, "the evicted upload's file is left");
}

#[tokio::test]
async fn idle_uploads_give_way_to_new_ones_busy_ones_do_not() {
    let (_dir, u) = uploads(UploadLimits {
        max_sessions: 2,
        evict_after_secs: 3600,
        ..limits()
    });
    let _a = u.start("r").await.unwrap();
    let _b = u.start("r").await.unwrap();
    let r = axum::response::IntoResponse::into_response(u.start("r").await.err().unwrap());
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3599..=3600).contains(&retry), "Retry-After {retry}");

    let (_dir, u) = uploads(UploadLimits {
        max_sessions: 2,
        evict_after_secs: 0,
        ..limits()
    });
    let a = u.start("r").await.unwrap();
    let b = u.start("r").await.unwrap();
    Uploads::touch(&a);
    let c = u.start("r").await.unwrap();
    assert!(u.get("r", &b.id).is_err(), "the longest idle upload stayed");
    assert!(u.get("r", &a.id).is_ok() && u.get("r", &c.id).is_ok());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(file_len(&b), None);

    // An upload with a chunk in flight is not idle, whatever the floor.
    let (tx, stalled) = body();
    let task = in_flight(&u, &a, stalled).await;
    u.cancel(&c).await.unwrap();
    let d = u.start("r").await.unwrap();
    let _e = u.start("r").await.unwrap();
    assert!(u.get("r", &d.id).is_err(), "the idle upload stayed");
    assert!(u.get("r", &a.id).is_ok(), "the busy upload was evicted");
    drop(tx);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_stalled_chunk_blocks_neither_status_nor_cancel() {
    let (_dir, u) = uploads(limits());
    let (s, tx, stalled) = ten_bytes_then_a_stall(&u).await;
    let task = in_flight(&u, &s, stalled).await;

    // Status: at once, the committed offset.
    let now = u.get("r", &s.id).unwrap();
    assert_eq!(now.range(), "0-9");
    // Cancel: at once; the chunk is aborted and the file removed.
    timeout(Duration::from_secs(1), u.cancel(&now))
        .await
        .expect("cancel waited for the stalled chunk")
        .unwrap();
    let e = timeout(Duration::from_secs(5), task)
        .await
        .expect("the stalled chunk was not aborted")
        .unwrap()
        .unwrap_err();
    assert_error(&e, 404, "BLOB_UPLOAD_UNKNOWN", &s.id);
    assert_eq!((file_len(&s), held(&u)), (None, 0));
    drop(tx);
}

#[tokio::test]
async fn a_newer_chunk_takes_over_from_a_stalled_one() {
    let (_dir, u) = uploads(limits());
    let (s, tx, stalled) = ten_bytes_then_a_stall(&u).await;
    let task = in_flight(&u, &s, stalled).await;

    let retry = u.append(&s, bytes(5, 3), Some(5), Some((10, 14)));
    timeout(Duration::from_secs(5), retry)
        .await
        .expect("the retry waited for the stalled chunk")
        .unwrap();
    let e = task.await.unwrap().unwrap_err();
    assert_error(&e, 400, "BLOB_UPLOAD_INVALID", "newer request");
    assert_eq!(
        (s.range(), file_len(&s), held(&u)),
        ("0-14".into(), Some(15), 15)
    );
    let f = u.finish(&s).await.unwrap();
    let mut want = vec![1u8; 10];
    want.extend([3u8; 5]);
    assert_eq!(f.digest.to_string(), sha256(&want));
    f.discard().await;
    drop(tx);
}

#[tokio::test]
async fn a_stalled_body_is_given_up_within_the_upload_timeout() {
    let (_dir, u) = uploads(UploadLimits {
        timeout_secs: 1,
        ..limits()
    });
    let (s, tx, stalled) = ten_bytes_then_a_stall(&u).await;
    let e = timeout(Duration::from_secs(5), u.append(&s, stalled, None, None))
        .await
        .expect("a stalled body outlived the upload timeout")
        .unwrap_err();
    assert_error(&e, 400, "BLOB_UPLOAD_INVALID", "sent nothing for 1 s");
    assert_eq!(
        (s.range(), file_len(&s), held(&u)),
        ("0-9".into(), Some(10), 10)
    );
    drop(tx);
}

#[tokio::test]
async fn a_body_not_matching_its_range_is_cut_back() {
    let (_dir, u) = uploads(limits());
    let s = u.start("r").await.unwrap();
    for (n, range) in [(8, (0, 4)), (3, (0, 4))] {
        let e = u
            .append(&s, bytes(n, 1), None, Some(range))
            .await
            .unwrap_err();
        assert_error(&e, 416, "RANGE_INVALID", "covers 5 bytes");
        assert_eq!(
            (s.range(), file_len(&s), held(&u)),
            ("0-0".into(), Some(0), 0)
        );
    }
    let e = u
        .append(&s, bytes(5, 1), None, Some((3, 7)))
        .await
        .unwrap_err();
    assert_error(&e, 416, "RANGE_INVALID", "send from byte 0");
}

#[tokio::test]
async fn the_free_space_reserve_refuses_upload_bytes() {
    let (dir, u) = uploads(limits());
    let s = u.start("r").await.unwrap();
    let mut u = Arc::into_inner(u).unwrap();
    u.limits.min_free_bytes = u64::MAX;
    let spool = dir.path().join("uploads").display().to_string();
    let e = u
        .append(&s, bytes(10, 1), Some(10), None)
        .await
        .unwrap_err();
    assert_error(&e, 507, "UNKNOWN", &spool);
    assert_error(&e, 507, "UNKNOWN", "uploads.min_free_bytes");
    assert!(s.is_open());
    assert_eq!((s.range(), held(&u)), ("0-0".into(), 0));
    let e = u.start("r").await.err().unwrap();
    assert_error(&e, 507, "UNKNOWN", "bytes free");
}
