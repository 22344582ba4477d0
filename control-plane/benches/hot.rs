//! The control plane's hot paths, each next to the cheapest thing that could do
//! the same job (issue 8, "performance at fleet scale").
//!
//! One criterion group per comparison, the floor in the same group, so the
//! floor runs in the same process minutes apart and the ratio means something
//! on a noisy shared machine:
//!
//! - `heartbeat`: [`ControlPlane::device_request`] for an activated license (no
//!   HTTP) on a real sled store in a temp dir with a manual clock, against the
//!   work it cannot avoid: one strict ed25519 check of the device signature,
//!   one ed25519 signature over a lease's signing input, and one durable sled
//!   write of the license record (insert and flush on a plain sled database with
//!   the store's settings). `floor_cpu` (the same without the flush) shows how
//!   much of either is the disk.
//! - `fingerprint`: [`FingerprintPolicy::matches`], exact and k-of-n, on
//!   seven-component maps, against `BTreeMap` equality of the same maps.
//! - `audit_append`: a [`Store::commit`] of one audit event against a plain sled
//!   insert and flush of the same record's bytes.
//!
//! Lease signing is not here: `keys/benches/verify.rs` already times
//! `keys::sign` of a lease against a bare ed25519 signature (`sign_lease`,
//! `raw_sign`). `docs/BENCHMARKS.md` records the results and the command.

// A failed `expect` here is broken set-up, and stopping the benchmark with its
// message is right (clippy's test allowances do not cover benches).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use control_plane::clock::ManualClock;
use control_plane::domain::audit::AuditEvent;
use control_plane::domain::settings::FingerprintPolicy;
use control_plane::secrets::Kek;
use control_plane::service::{Actor, ControlPlane, DeviceOutcome, IssueRequest};
use control_plane::store::sled_store::SledStore;
use control_plane::store::{Change, Store as _};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ed25519_dalek::Signer as _;
use keys::proto::{Components, DeviceRequest, RequestKind, license_key_digest};
use keys::{PrivateKey, UnixTime};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

const NOW: UnixTime = UnixTime(1_800_000_000);
const DEVICE_SEED: [u8; 32] = [7; 32];
const FLOOR_SIGNING_SEED: [u8; 32] = [9; 32];

/// Seven components as an appliance sends them: names, and values salted and
/// hashed on the box (43 characters of base64url each).
fn components(changed: &[&str]) -> Components {
    [
        "machine_id",
        "product_uuid",
        "board_serial",
        "mac",
        "cpu",
        "disk_serial",
        "memory",
    ]
    .iter()
    .enumerate()
    .map(|(i, name)| {
        let mut value = [i as u8; 32];
        if changed.contains(name) {
            value[0] ^= 0xff;
        }
        ((*name).to_owned(), keys::b64::encode(value))
    })
    .collect()
}

/// A plain sled database with the store's settings, for the write floors.
fn plain_sled(dir: &std::path::Path) -> sled::Db {
    sled::Config::new()
        .path(dir)
        .cache_capacity(128 * 1024 * 1024)
        .mode(sled::Mode::HighThroughput)
        .open()
        .unwrap()
}

struct Appliance {
    cp: ControlPlane,
    id: control_plane::domain::ids::LicenseId,
    key: String,
    device: PrivateKey,
    components: Components,
    /// Strictly increasing per device: one device sends every heartbeat.
    counter: std::cell::Cell<u64>,
}

impl Appliance {
    fn request(&self, kind: RequestKind) -> DeviceRequest {
        let counter = self.counter.get() + 1;
        self.counter.set(counter);
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&counter.to_be_bytes());
        DeviceRequest::sign(
            kind,
            self.id.as_str(),
            &self.key,
            self.components.clone(),
            &self.device,
            keys::b64::encode(nonce),
            counter,
            "4.2.1".into(),
            NOW.secs(),
        )
    }

    async fn send(&self, request: &DeviceRequest) -> String {
        match self
            .cp
            .device_request(&self.id, &self.key, request, "10.1.2.3")
            .await
            .unwrap()
        {
            DeviceOutcome::Lease(response) => response.token,
            DeviceOutcome::Denied { reason, .. } => panic!("denied: {reason:?}"),
        }
    }
}

/// A control plane on a sled store in `dir` with one license, activated.
async fn appliance(dir: &std::path::Path) -> Appliance {
    let store = Arc::new(SledStore::open(&dir.join("data")).unwrap());
    let clock = Arc::new(ManualClock::new(NOW));
    let kek = Kek::generate().unwrap();
    ControlPlane::initialize(store.as_ref(), clock.as_ref(), &kek, "admin")
        .await
        .unwrap();
    let cp = ControlPlane::open(store, clock, kek, "bench".into())
        .await
        .unwrap();
    let request = IssueRequest {
        customer: "customer-042".into(),
        entitlements: keys::Entitlements {
            product: "gateway".into(),
            features: vec!["sso".into(), "audit-log".into(), "ha-cluster".into()],
            limits: [("seats".to_owned(), 250)].into_iter().collect(),
        },
        subscription_ends_at: Some(NOW.plus(365 * 86_400)),
        policy: Default::default(),
    };
    let (license, key) = cp.issue(&Actor::system(), request).await.unwrap();
    let appliance = Appliance {
        cp,
        id: license.id,
        key: key.expose().to_owned(),
        device: PrivateKey::from_seed(&DEVICE_SEED),
        components: components(&[]),
        counter: std::cell::Cell::new(0),
    };
    let activation = appliance.request(RequestKind::Activate);
    appliance.send(&activation).await;
    appliance
}

fn heartbeat(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let appliance = rt.block_on(appliance(dir.path()));

    // One heartbeat outside the timing, for the sizes the floor works on.
    let request = appliance.request(RequestKind::Heartbeat);
    let token = rt.block_on(appliance.send(&request));
    let record = rt
        .block_on(appliance.cp.store().license(&appliance.id))
        .unwrap()
        .unwrap();
    let record_bytes = serde_json::to_vec(&record).unwrap();
    let (lease_input, _) = token.rsplit_once('.').unwrap();
    let lease_input = lease_input.as_bytes().to_vec();

    // The floor's inputs: the next request's signing input and signature, a
    // signing key, and a plain sled database beside the store.
    let device_input = request.signing_input(&license_key_digest(&appliance.key));
    let device_signature = ed25519_dalek::Signature::from_bytes(
        &keys::b64::decode_array::<64>(&request.signature).unwrap(),
    );
    let device_key =
        ed25519_dalek::VerifyingKey::from_bytes(appliance.device.public().as_bytes()).unwrap();
    device_key
        .verify_strict(&device_input, &device_signature)
        .unwrap();
    let lease_key = ed25519_dalek::SigningKey::from_bytes(&FLOOR_SIGNING_SEED);
    let plain = plain_sled(&dir.path().join("plain"));
    let plain_tree = plain.open_tree("licenses").unwrap();
    eprintln!(
        "heartbeat: request signing input {} bytes, lease signing input {} bytes, license record {} bytes",
        device_input.len(),
        lease_input.len(),
        record_bytes.len()
    );
    let written = std::cell::Cell::new(0u64);
    let floor_cpu = || {
        device_key
            .verify_strict(black_box(&device_input), black_box(&device_signature))
            .unwrap();
        let signature = lease_key.sign(black_box(&lease_input));
        // Each heartbeat's record differs from the last (counter, lease seq):
        // sled writes nothing at all for a value equal to the stored one.
        let n = written.get() + 1;
        written.set(n);
        let mut value = record_bytes.clone();
        value[..8].copy_from_slice(&n.to_be_bytes());
        plain_tree
            .insert(appliance.id.as_str(), black_box(value))
            .unwrap();
        signature
    };

    let mut group = c.benchmark_group("heartbeat");
    group.bench_function("device_request", |b| {
        b.iter_batched(
            || appliance.request(RequestKind::Heartbeat),
            |request| rt.block_on(appliance.send(&request)),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("floor", |b| {
        b.iter(|| {
            let signature = floor_cpu();
            plain.flush().unwrap();
            signature
        });
    });
    group.bench_function("floor_cpu", |b| b.iter(&floor_cpu));
    group.finish();
}

fn fingerprint(c: &mut Criterion) {
    let bound = components(&[]);
    let same = components(&[]);
    let new_nic = components(&["mac"]);
    let exact = FingerprintPolicy::Exact;
    let three = FingerprintPolicy::KOfN { k: 3 };
    assert!(exact.matches(&bound, &same));
    assert!(!exact.matches(&bound, &new_nic));
    assert!(three.matches(&bound, &new_nic));

    let mut group = c.benchmark_group("fingerprint");
    group.bench_function("exact_same_box", |b| {
        b.iter(|| exact.matches(black_box(&bound), black_box(&same)));
    });
    group.bench_function("k_of_n_same_box", |b| {
        b.iter(|| three.matches(black_box(&bound), black_box(&same)));
    });
    group.bench_function("k_of_n_new_nic", |b| {
        b.iter(|| three.matches(black_box(&bound), black_box(&new_nic)));
    });
    group.bench_function("floor_btreemap_eq", |b| {
        b.iter(|| black_box(&bound) == black_box(&same));
    });
    group.finish();
}

fn audit_append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(async { SledStore::open(&dir.path().join("data")).unwrap() });
    // What a support engineer's revoke records.
    let event = AuditEvent {
        action: "license.revoke".into(),
        target: "lic_5f0c2a9e7b1d4c3a8e6f0b2d4a6c8e0f".into(),
        actor_id: "usr_8d3f1b2c4a5e6f708192a3b4c5d6e7f8".into(),
        actor_name: "sam".into(),
        ip: "192.0.2.10".into(),
        metadata: serde_json::json!({
            "grace_days": 5, "from": "active", "to": "grace", "grace_expires_at": NOW.plus(5 * 86_400),
        }),
    };
    let commit = |event: &AuditEvent| {
        let change = Change {
            audit: vec![event.clone()],
            ..Change::default()
        };
        rt.block_on(store.commit(change, NOW)).unwrap()
    };
    let record = commit(&event).pop().unwrap();
    let record_bytes = serde_json::to_vec(&record).unwrap();
    eprintln!("audit_append: record {} bytes", record_bytes.len());
    let plain = plain_sled(&dir.path().join("plain"));
    let plain_tree = plain.open_tree("audit").unwrap();
    let mut seq = 0u64;

    let mut group = c.benchmark_group("audit_append");
    group.bench_function("store_commit", |b| b.iter(|| commit(black_box(&event))));
    group.bench_function("floor_sled_insert_flush", |b| {
        b.iter(|| {
            seq += 1;
            plain_tree
                .insert(seq.to_be_bytes(), black_box(record_bytes.as_slice()))
                .unwrap();
            plain.flush().unwrap()
        });
    });
    group.finish();
}

criterion_group! {
    name = durable;
    // Each write waits for a flush (milliseconds): fewer, shorter samples.
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = heartbeat, audit_append
}
criterion_group!(in_memory, fingerprint);
criterion_main!(durable, in_memory);
