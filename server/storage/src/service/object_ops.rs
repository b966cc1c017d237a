//! The storage operations on an object store: the same protocol, grants, limits and hooks as
//! on the local disk (see the parent module), with the tree in [`ObjectBackend`].

use futures_util::StreamExt;

use super::*;

impl StorageService {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn perform_object(
        &self,
        store: &ObjectBackend,
        op: Op,
        claims: GrantClaims,
        request: &StorageRequest,
        send: &mut SendStream,
        recv: &mut RecvStream,
        buffered: BytesMut,
    ) -> Outcome {
        let path = &claims.path;
        let result = match op {
            Op::CreateDirectory => match store.create_directory(path).await {
                Ok(()) => {
                    self.settle_with(&claims, || store.undo_create_directory(path))
                        .await
                }
                Err(status) => Err(status),
            },
            // Nothing to undo: the hook's error tells the client the application did not record
            // the delete.
            Op::DeleteItem => match store.delete_item(path).await {
                Ok(()) => self.settle_with(&claims, || async { Ok(()) }).await,
                Err(status) => Err(status),
            },
            Op::Stat => store.stat(path).await.map(|entry| {
                Outcome::Reply(StorageReply {
                    entry: Some(entry),
                    ..done(Code::Ok, "")
                })
            }),
            Op::Move => {
                let to = &claims.dest_path;
                match store.move_item(path, to, claims.overwrite).await {
                    Ok(()) => {
                        self.settle_with(&claims, || store.move_item(to, path, false))
                            .await
                    }
                    Err(status) => Err(status),
                }
            }
            Op::ReadTree => match store
                .read_tree(path, self.inner.config.max_tree_entries)
                .await
            {
                Ok(entries) => return send_tree(send, entries).await,
                Err(status) => Err(status),
            },
            Op::ReadFile => return self.read_object(store, path, send).await,
            Op::WriteFile => {
                let write = self.write_object(store, &claims, request, send, recv, buffered);
                return self.reporting_abandoned(&claims, write).await;
            }
            Op::Unspecified => Err(Status::invalid_argument("no operation")),
        };
        result.unwrap_or_else(Outcome::from)
    }

    /// Streams an object, then its size and checksum.
    async fn read_object(
        &self,
        store: &ObjectBackend,
        path: &StoragePath,
        send: &mut SendStream,
    ) -> Outcome {
        let (entry, mut bytes) = match store.open(path).await {
            Ok(opened) => opened,
            Err(status) => return status.into(),
        };
        let size = entry.size;
        if send_frame(send, &download_head(entry)).await.is_err() {
            return Outcome::Gone;
        }
        let mut hasher = blake3::Hasher::new();
        let mut sent = 0u64;
        let mut failed = false;
        while let Some(chunk) = bytes.next().await {
            let Ok(chunk) = chunk.inspect_err(|e| {
                tracing::warn!(%path, error = %e, "object store read failed");
            }) else {
                failed = true;
                break;
            };
            hasher.update(&chunk);
            sent += chunk.len() as u64;
            if sent > size || send.write_chunk(chunk).await.is_err() {
                failed = true;
                break;
            }
        }
        let hash = (!failed).then(|| hasher.finalize());
        self.end_download(send, path, sent, size, hash)
    }

    /// Receives an upload into a multipart upload (see [`ObjectUpload`]), then completes it.
    async fn write_object(
        &self,
        store: &ObjectBackend,
        claims: &GrantClaims,
        request: &StorageRequest,
        send: &mut SendStream,
        recv: &mut RecvStream,
        buffered: BytesMut,
    ) -> Outcome {
        let path = &claims.path;
        let (max, too_large) = match self.upload_limit(claims, request) {
            Ok(limit) => limit,
            Err(outcome) => return outcome,
        };
        let (_turn, cancelled) = match self.upload_turn(claims).await {
            Ok(turn) => turn,
            Err(outcome) => return outcome,
        };
        let resumable = claims.resumable.then_some(claims.upload_id.as_str());
        let resume = request.resume && claims.resumable;
        let mut upload = match store
            .begin_upload(path, claims.overwrite, resumable, resume)
            .await
        {
            Ok(upload) => upload,
            Err(status) => return Outcome::Refuse(status, Some(close::stream::CANCELLED)),
        };
        let offset = upload.offset;
        if offset > max {
            upload.abandon(false).await;
            return too_large(offset);
        }
        let ready = StorageReply {
            stage: Stage::Ready as i32,
            offset,
            ..Default::default()
        };
        if send_frame(send, &ready).await.is_err() {
            upload.abandon(claims.resumable).await;
            return Outcome::Gone;
        }

        // The writer task stores parts as they fill; this task moves bytes from QUIC to it.
        let (tx, mut rx) = mpsc::channel::<Vec<Bytes>>(QUEUE);
        let writer = tokio::spawn(async move {
            let result = upload.write_batches(&mut rx).await;
            (result, upload)
        });
        let first = (!buffered.is_empty()).then(|| vec![buffered.freeze()]);
        let (end, total) = self
            .receive(
                recv,
                first,
                tx,
                offset,
                max,
                request.size,
                &cancelled,
                &too_large,
            )
            .await;
        let (written, upload) = match writer.await {
            Ok(x) => x,
            Err(_) => return Status::internal("storage worker failed").into(),
        };
        if let Err(status) = written {
            upload.abandon(claims.resumable).await;
            return status.into();
        }
        if let Err(outcome) = end {
            // Over the cap or the announced size: the bytes are worthless. Interrupted or taken
            // over by a newer request: keep the stored parts when the upload is resumable.
            let worthless = matches!(&outcome, Outcome::Refuse(s, _)
                if matches!(s.code(), Code::ResourceExhausted | Code::InvalidArgument));
            upload.abandon(claims.resumable && !worthless).await;
            return outcome;
        }
        if let Some(size) = request.size {
            if total != size {
                upload.abandon(claims.resumable).await;
                return Status::failed_precondition(format!(
                    "upload ended after {total} of its announced {size} bytes"
                ))
                .into();
            }
        }
        // With hooks, the version being replaced is kept aside until they agree.
        let aside = match (&self.inner.config.hooks.0, claims.overwrite) {
            (Some(_), true) => match store.keep_aside(path).await {
                Ok(aside) => aside,
                Err(status) => {
                    upload.abandon(false).await;
                    return status.into();
                }
            },
            _ => None,
        };
        let checksum = match upload.commit(claims.overwrite).await {
            Ok(checksum) => checksum,
            Err(status) => {
                store.forget_aside(path, aside).await;
                return status.into();
            }
        };
        let told = self.tell(claims, total, checksum.as_bytes().to_vec()).await;
        match &told {
            Ok(()) => store.forget_aside(path, aside).await,
            Err(_) => {
                if let Err(why) = store.undo_upload(path, aside).await {
                    tracing::error!(%path, reason = %why.message(), "cannot undo a refused upload");
                }
            }
        }
        told.map(|()| {
            self.inner.counters.written.fetch_add(1, Ordering::Relaxed);
            tracing::info!(size = total, "file stored");
            Outcome::Reply(StorageReply {
                size: total,
                checksum: checksum.as_bytes().to_vec(),
                ..done(Code::Ok, "")
            })
        })
        .unwrap_or_else(Outcome::from)
    }
}
