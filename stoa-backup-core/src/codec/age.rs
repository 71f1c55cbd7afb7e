//! Streaming age encryption (X25519 recipients or a passphrase).

use std::fmt;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

pub use age::secrecy::{ExposeSecret, SecretString};
use bytes::Bytes;
use futures::{AsyncWriteExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::compat::{
    FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt,
};
use tokio_util::sync::PollSender;

use super::{Codec, Keyring};
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::CodecStep;
use crate::stream::{into_reader, ByteStream, TaskStream};

const COMPONENT: &str = "codec/age";

/// Who can decrypt: public X25519 recipients, or a passphrase.
#[derive(Clone)]
pub enum AgeEncryption {
    /// Encrypt to one or more X25519 public keys (`age1…`).
    Recipients(Vec<age::x25519::Recipient>),
    /// Encrypt with a passphrase (scrypt); anyone with the passphrase can decrypt.
    Passphrase(SecretString),
}

impl fmt::Debug for AgeEncryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgeEncryption::Recipients(r) => f
                .debug_tuple("Recipients")
                .field(&r.iter().map(|r| r.to_string()).collect::<Vec<_>>())
                .finish(),
            AgeEncryption::Passphrase(_) => f.write_str("Passphrase(<redacted>)"),
        }
    }
}

impl AgeEncryption {
    /// Parses `age1…` recipient strings.
    pub fn recipients<I, S>(recipients: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let parsed = recipients
            .into_iter()
            .map(|s| {
                age::x25519::Recipient::from_str(s.as_ref().trim()).map_err(|e| {
                    Error::config(format!("invalid age recipient {:?}: {e}", s.as_ref()))
                        .with_component(COMPONENT)
                        .with_hint("recipients are public keys starting with 'age1'")
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if parsed.is_empty() {
            return Err(Error::config("no age recipients given").with_component(COMPONENT));
        }
        Ok(AgeEncryption::Recipients(parsed))
    }

    /// A passphrase (must not be empty).
    pub fn passphrase(passphrase: impl Into<String>) -> Result<Self> {
        let p: String = passphrase.into();
        if p.is_empty() {
            return Err(Error::config("empty encryption passphrase").with_component(COMPONENT));
        }
        Ok(AgeEncryption::Passphrase(SecretString::from(p)))
    }
}

/// Filling a [`Keyring`] needs age.
impl Keyring {
    /// Adds an X25519 identity (`AGE-SECRET-KEY-1…`).
    pub fn with_identity(mut self, secret_key: &str) -> Result<Self> {
        let id = age::x25519::Identity::from_str(secret_key.trim()).map_err(|_| {
            // Never echo the input: it is a secret key.
            Error::config("invalid age identity")
                .with_component(COMPONENT)
                .with_hint("identities are secret keys starting with 'AGE-SECRET-KEY-1'")
        })?;
        self.identities.push(id);
        Ok(self)
    }

    /// Adds every identity of an age identity file's text (comments and blank lines skipped).
    pub fn with_identity_file_contents(mut self, contents: &str) -> Result<Self> {
        for line in contents.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            self = self.with_identity(line)?;
        }
        Ok(self)
    }

    /// Sets the passphrase for passphrase-encrypted backups.
    pub fn with_passphrase(mut self, passphrase: impl Into<String>) -> Self {
        self.passphrase = Some(SecretString::from(passphrase.into()));
        self
    }

    /// A keyring matching an encryption config where possible (passphrase only: X25519
    /// recipients cannot decrypt).
    pub fn for_encryption(enc: &AgeEncryption) -> Self {
        match enc {
            AgeEncryption::Passphrase(p) => Keyring::new().with_passphrase(p.expose_secret()),
            AgeEncryption::Recipients(_) => Keyring::new(),
        }
    }
}

/// Generates a new X25519 key pair: (secret identity string, public recipient string).
/// The secret is returned as a [`SecretString`] so it does not end up in logs by accident.
pub fn generate_identity() -> (SecretString, String) {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    (id.to_string(), public)
}

/// age encryption as a codec stage.
#[derive(Debug, Clone)]
pub struct AgeCodec {
    encryption: AgeEncryption,
}

impl AgeCodec {
    /// A codec encrypting with `encryption`.
    pub fn new(encryption: AgeEncryption) -> Self {
        AgeCodec { encryption }
    }

    fn encryptor(&self) -> Result<age::Encryptor> {
        match &self.encryption {
            AgeEncryption::Recipients(r) => age::Encryptor::with_recipients(
                r.iter().map(|r| r as &dyn age::Recipient),
            )
            .map_err(|e| Error::config(format!("cannot encrypt: {e}")).with_component(COMPONENT)),
            AgeEncryption::Passphrase(p) => Ok(age::Encryptor::with_user_passphrase(p.clone())),
        }
    }
}

impl Codec for AgeCodec {
    fn step(&self) -> CodecStep {
        match &self.encryption {
            AgeEncryption::Recipients(r) => CodecStep::Age {
                recipients: r.iter().map(|r| r.to_string()).collect(),
                passphrase: false,
            },
            AgeEncryption::Passphrase(_) => CodecStep::Age {
                recipients: vec![],
                passphrase: true,
            },
        }
    }

    fn encode(&self, input: ByteStream) -> Result<ByteStream> {
        let encryptor = self.encryptor()?;
        // age only offers a writer; run it in a task that writes into a bounded channel.
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(4);
        let task = tokio::spawn(encrypt_task(encryptor, input, tx));
        Ok(Box::pin(TaskStream { rx, task }))
    }
}

async fn encrypt_task(
    encryptor: age::Encryptor,
    mut input: ByteStream,
    tx: mpsc::Sender<Result<Bytes>>,
) {
    let sink = ChannelWriter {
        tx: PollSender::new(tx.clone()),
    }
    .compat_write();
    let result: Result<()> = async {
        let mut writer = encryptor
            .wrap_async_output(sink)
            .await
            .map_err(|e| Error::internal(format!("age header: {e}")).with_component(COMPONENT))?;
        while let Some(chunk) = input.next().await {
            writer.write_all(&chunk?).await?;
        }
        // close() writes the final chunk; without it the ciphertext is truncated.
        writer.close().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        // If the consumer is gone there is nobody left to tell.
        tx.send(Err(e)).await.ok();
    }
}

/// A tokio `AsyncWrite` that sends each write as a chunk over a bounded channel.
struct ChannelWriter {
    tx: PollSender<Result<Bytes>>,
}

impl tokio::io::AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.tx.poll_reserve(cx) {
            Poll::Ready(Ok(())) => {
                let n = buf.len();
                self.tx
                    .send_item(Ok(Bytes::copy_from_slice(buf)))
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(_)) => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
            Poll::Pending => Poll::Pending,
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Undoes age encryption with the keyring's identities.
pub(crate) async fn decode(
    input: ByteStream,
    step: &CodecStep,
    keyring: &Keyring,
) -> Result<ByteStream> {
    let reader = into_reader(input).compat();
    let decryptor = age::Decryptor::new_async_buffered(futures::io::BufReader::new(reader))
        .await
        .map_err(|e| map_decrypt_error(e, "read the age header"))?;
    let reader = if decryptor.is_scrypt() {
        let Some(p) = &keyring.passphrase else {
            return Err(missing_key(
                step,
                "this artifact is passphrase-encrypted; supply the passphrase",
            ));
        };
        let id = age::scrypt::Identity::new(p.clone());
        decryptor
            .decrypt_async(std::iter::once(&id as &dyn age::Identity))
            .map_err(|e| map_decrypt_error(e, "decrypt"))?
    } else {
        if keyring.identities.is_empty() {
            return Err(missing_key(
                step,
                "supply an age identity (AGE-SECRET-KEY-1…) matching a recipient",
            ));
        }
        decryptor
            .decrypt_async(keyring.identities.iter().map(|i| i as &dyn age::Identity))
            .map_err(|e| map_decrypt_error(e, "decrypt"))?
    };
    Ok(super::decoded_stream(
        reader.compat(),
        "age",
        ErrorKind::Integrity,
    ))
}

fn missing_key(step: &CodecStep, hint: &str) -> Error {
    let recipients = match step {
        CodecStep::Age { recipients, .. } if !recipients.is_empty() => recipients.join(", "),
        _ => "passphrase".to_string(),
    };
    Error::new(
        ErrorKind::Unauthenticated,
        format!("no key to decrypt (encrypted to: {recipients})"),
    )
    .with_component(COMPONENT)
    .with_operation("decrypt")
    .with_hint(hint.to_string())
}

fn map_decrypt_error(e: age::DecryptError, what: &str) -> Error {
    let kind = match e {
        age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed => {
            ErrorKind::Unauthenticated
        }
        _ => ErrorKind::Integrity,
    };
    Error::new(kind, format!("cannot {what}: {e}"))
        .with_component(COMPONENT)
        .with_operation("decrypt")
        .with_hint(match kind {
            ErrorKind::Unauthenticated => {
                "check the identity or passphrase matches the one used for the backup"
            }
            _ => "the artifact is corrupt or truncated: restore from another run",
        })
}
