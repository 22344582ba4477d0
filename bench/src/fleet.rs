//! The simulated fleet: licenses issued through the real API, and one device per
//! license with its own ed25519 key, fingerprint components and a strictly
//! increasing counter (docs/api.md, "The appliance protocol").

use anyhow::{Context as _, Result, anyhow, bail};
use keys::proto::{Components, DeviceRequest, RequestKind};
use keys::{PrivateKey, UnixTime};
use reqwest::Client;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A simulated appliance bound to one license.
pub struct Device {
    /// The license id (`lic_...`).
    pub license_id: String,
    /// `Bearer pk_...`, the license key as the appliance sends it.
    pub authorization: String,
    license_key: String,
    key: PrivateKey,
    components: Components,
    counter: u64,
    index: u64,
}

// By hand: the device key is a secret (STYLE.md "Secrets don't print").
impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("license_id", &self.license_id)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// A new box for the license `license_id` with the key `license_key`.
    pub fn new(index: usize, license_id: String, license_key: String) -> Result<Device> {
        let key = PrivateKey::generate().context("generating a device key")?;
        // Stand-ins for the salted hashes the `appliance` agent sends: the
        // control plane only compares the strings.
        let components = [
            ("machine_id", format!("m{index:08}")),
            ("product_uuid", format!("u{index:08}")),
            ("macs", format!("a{index:08}")),
            ("cpu", "epyc-2".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Ok(Device {
            authorization: format!("Bearer {license_key}"),
            license_id,
            license_key,
            key,
            components,
            counter: 0,
            index: index as u64,
        })
    }

    /// The next signed request (the counter goes up); its nonce is returned
    /// beside the JSON body so an answer can be matched to it.
    pub fn next_body(&mut self, kind: RequestKind) -> Result<(Vec<u8>, String)> {
        self.counter += 1;
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&self.counter.to_be_bytes());
        nonce[8..].copy_from_slice(&self.index.to_be_bytes());
        let nonce = keys::b64::encode(nonce);
        let request = DeviceRequest::sign(
            kind,
            &self.license_id,
            &self.license_key,
            self.components.clone(),
            &self.key,
            nonce.clone(),
            self.counter,
            "1.4.2".into(),
            UnixTime::now().secs(),
        );
        let body = serde_json::to_vec(&request).context("encoding a device request")?;
        Ok((body, nonce))
    }
}

/// How long a provisioning phase took.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PhaseTime {
    pub count: usize,
    pub secs: f64,
    pub per_sec: f64,
}

impl PhaseTime {
    fn new(count: usize, elapsed: Duration) -> PhaseTime {
        let secs = elapsed.as_secs_f64();
        #[allow(clippy::cast_precision_loss)] // Counts stay far below 2^52.
        let per_sec = if secs > 0.0 { count as f64 / secs } else { 0.0 };
        PhaseTime {
            count,
            secs,
            per_sec,
        }
    }
}

/// Runs `job(i)` for every `i` in `0..n` on `concurrency` tasks; returns the
/// results in order of `i` and the time it took. The first error ends it.
async fn on_tasks<T, F, Fut>(n: usize, concurrency: usize, job: F) -> Result<(Vec<T>, Duration)>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let next = next.clone();
        let job = job.clone();
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(done);
                }
                done.push((i, job(i).await?));
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.context("a provisioning task")??);
    }
    let elapsed = start.elapsed();
    all.sort_by_key(|(i, _)| *i);
    Ok((all.into_iter().map(|(_, t)| t).collect(), elapsed))
}

/// Issues `n` licenses (`POST /licenses`) with the admin token; returns
/// (id, license key) of each.
pub async fn issue(
    client: &Client,
    base: &str,
    admin_token: &str,
    n: usize,
    concurrency: usize,
) -> Result<(Vec<(String, String)>, PhaseTime)> {
    let client = client.clone();
    let url = format!("{base}/licenses");
    let authorization = format!("Bearer {admin_token}");
    let (licenses, elapsed) = on_tasks(n, concurrency, move |i| {
        let client = client.clone();
        let url = url.clone();
        let authorization = authorization.clone();
        async move {
            let body = serde_json::json!({
                "customer": format!("fleet-{:03}", i % 100),
                "entitlements": {"product": "gateway", "features": ["vpn"], "limits": {"seats": 10}},
            });
            let response = client
                .post(&url)
                .header("authorization", authorization)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .with_context(|| format!("POST {url}"))?;
            let status = response.status();
            let text = response.text().await.context("reading an issue answer")?;
            if status.as_u16() != 201 {
                bail!("POST {url}: {status}: {text}");
            }
            let value: serde_json::Value =
                serde_json::from_str(&text).context("parsing an issue answer")?;
            let id = value["license"]["id"].as_str();
            let key = value["license_key"].as_str();
            match (id, key) {
                (Some(id), Some(key)) => Ok((id.to_owned(), key.to_owned())),
                _ => Err(anyhow!("POST {url}: no license id or key in {text}")),
            }
        }
    })
    .await?;
    Ok((licenses, PhaseTime::new(n, elapsed)))
}

/// Activates one device per license (`POST /licenses/{id}/activate`).
pub async fn activate(
    client: &Client,
    base: &str,
    licenses: Vec<(String, String)>,
    concurrency: usize,
) -> Result<(Vec<Device>, PhaseTime)> {
    let n = licenses.len();
    // Each slot is taken once, by the task that activates its device.
    let mut slots = Vec::with_capacity(n);
    for (i, (id, key)) in licenses.into_iter().enumerate() {
        slots.push(std::sync::Mutex::new(Some(Device::new(i, id, key)?)));
    }
    let shared = Arc::new(slots);
    let client = client.clone();
    let base = base.to_owned();
    let (devices, elapsed) = on_tasks(n, concurrency, move |i| {
        let client = client.clone();
        let base = base.clone();
        let shared = shared.clone();
        async move {
            let mut device = shared
                .get(i)
                .and_then(|slot| slot.lock().ok()?.take())
                .ok_or_else(|| anyhow!("device {i} is missing"))?;
            activate_one(&client, &base, &mut device).await?;
            Ok(device)
        }
    })
    .await?;
    Ok((devices, PhaseTime::new(n, elapsed)))
}

/// Why one request failed: `kind` counts it in a report (`http 409
/// invalid_transition`, `timeout`, ...), `detail` says everything.
#[derive(Debug)]
pub struct Failed {
    pub kind: String,
    pub detail: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for Failed {}

/// Activates `device` (`POST /licenses/{id}/activate`, a signed activation
/// request); `Ok` on a `200`. The provisioning of the fleet and the activations
/// measured beside the heartbeats both go through here.
pub async fn activate_one(client: &Client, base: &str, device: &mut Device) -> Result<(), Failed> {
    let url = format!("{base}/licenses/{}/activate", device.license_id);
    let (body, _) = device
        .next_body(RequestKind::Activate)
        .map_err(|e| Failed {
            kind: "client".to_owned(),
            detail: format!("{e:#}"),
        })?;
    let response = client
        .post(&url)
        .header("authorization", device.authorization.as_str())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| Failed {
            kind: crate::load::transport_kind(&e),
            detail: format!("POST {url}: {e}"),
        })?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| Failed {
        kind: crate::load::transport_kind(&e),
        detail: format!("reading the answer to POST {url}: {e}"),
    })?;
    if status.as_u16() != 200 {
        return Err(Failed {
            kind: crate::load::http_kind(status, &bytes),
            detail: format!("POST {url}: {status}: {}", String::from_utf8_lossy(&bytes)),
        });
    }
    Ok(())
}
