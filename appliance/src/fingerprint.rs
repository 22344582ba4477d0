//! The box's hardware fingerprint (DESIGN.md "Appliance"): a few named components
//! read from the machine, salted with the license id and hashed before they leave
//! the box.
//!
//! Collection is best-effort on purpose. The control plane matches components by
//! policy (exact, or k of n), so a component that cannot be read is simply absent:
//! a container without DMI, a box without a stable NIC or an unprivileged service
//! still produces a fingerprint, and nothing here ever fails or panics.
//!
//! Values are normalised so that what the fingerprint measures is the hardware,
//! not the noise around it: virtual network interfaces (which come and go with
//! containers, VPNs and reboots) are skipped, memory and disk sizes are rounded
//! down to whole GiB, and known placeholder DMI UUIDs are dropped because
//! thousands of boards share them.
//!
//! This module does not decide what a mismatch means; it only reports the facts.

use keys::proto::Components;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// Component names, in clear on the wire so the control plane can say which
/// component changed.
const MACHINE_ID: &str = "machine_id";
const PRODUCT_UUID: &str = "product_uuid";
const MACS: &str = "macs";
const CPU: &str = "cpu";
const MEMORY: &str = "memory";
const HOSTNAME: &str = "hostname";
const ROOT_DISK: &str = "root_disk";

/// systemd's machine id, then D-Bus's copy for systems without systemd.
const MACHINE_ID_PATHS: [&str; 2] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];
/// Readable by root only on most distributions; absent in containers.
const PRODUCT_UUID_PATH: &str = "/sys/class/dmi/id/product_uuid";
/// Where Linux lists software network devices (loopback, bridges, veth, tun...).
const SYSFS_VIRTUAL_NET: &str = "/sys/devices/virtual/net";

/// Interface name prefixes of virtual devices. Their MAC addresses are usually
/// random and change with each container, VPN session or reboot, so counting
/// them would make the fingerprint drift on an unchanged box.
const VIRTUAL_INTERFACE_PREFIXES: &[&str] = &[
    "lo",
    "docker",
    "veth",
    "br-",
    "virbr",
    "vnet",
    "tun",
    "tap",
    "wg",
    "cni",
    "flannel",
    "cali",
    // Beyond the list in the design: other common software devices.
    "ifb",
    "dummy",
    "podman",
    "lxcbr",
    "lxdbr",
    "vxlan",
    "weave",
    "kube",
    "tailscale",
    "zt",
    "vboxnet",
    "vmnet",
];

/// DMI UUIDs that firmware vendors ship unset on many boards; they identify
/// nothing. (All-same digits such as all zeros or all F's are refused separately.)
const PLACEHOLDER_UUIDS: &[&str] = &["03000200-0400-0500-0006-000700080009"];

/// The files read here are a few bytes long; the cap keeps a strange mount from
/// making the fingerprint read something large.
const MAX_FILE_BYTES: u64 = 4096;

const GIB: u64 = 1 << 30;

/// Raw, unhashed component values by name. They never leave the box: only
/// [`hashed`] values are sent, and [`machine_secret`] is derived from them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawFacts {
    pub entries: BTreeMap<String, String>,
}

/// Reads this machine's components now. Anything unreadable is left out.
pub fn collect_raw() -> RawFacts {
    let mut entries = BTreeMap::new();
    let mut put = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            entries.insert(name.to_owned(), value);
        }
    };
    put(
        MACHINE_ID,
        MACHINE_ID_PATHS
            .iter()
            .find_map(|path| read_small(Path::new(path)).and_then(|s| usable_machine_id(&s))),
    );
    put(
        PRODUCT_UUID,
        read_small(Path::new(PRODUCT_UUID_PATH)).and_then(|s| usable_product_uuid(&s)),
    );
    put(MACS, macs());
    let (cpu, memory) = cpu_and_memory();
    put(CPU, cpu);
    put(MEMORY, memory);
    put(HOSTNAME, hostname());
    put(ROOT_DISK, root_disk());
    RawFacts { entries }
}

/// The components as sent to the control plane: names in clear, each value
/// `base64url(SHA-256("appliance-fingerprint/v1\0" || license_id || "\0" || name
/// || "\0" || value))`.
///
/// Salting with the license id means the same box carries unrelated values under
/// two licenses, so two vendors (or two customers of one vendor) cannot correlate
/// their fleets, and the control plane never learns a raw MAC or serial.
pub fn hashed(raw: &RawFacts, license_id: &str) -> Components {
    raw.entries
        .iter()
        .map(|(name, value)| {
            let mut hasher = Sha256::new();
            hasher.update(b"appliance-fingerprint/v1\0");
            hasher.update(license_id.as_bytes());
            hasher.update(b"\0");
            hasher.update(name.as_bytes());
            hasher.update(b"\0");
            hasher.update(value.as_bytes());
            (name.clone(), keys::b64::encode(hasher.finalize()))
        })
        .collect()
}

/// A 32-byte secret tied to this machine: SHA-256 over
/// `"appliance-machine-secret/v1\0" || machine_id || "\0" || product_uuid`
/// (empty strings for absent components).
///
/// It seals local secrets (the device key at rest) so that a data directory
/// copied to another box does not open there. It is defence in depth only: the
/// inputs are readable on the box, so a root user on it can recompute the secret.
/// Only the two most stable components go in, so a new NIC or more memory does
/// not make the box unable to open its own keys.
pub fn machine_secret(raw: &RawFacts) -> [u8; 32] {
    let get = |name: &str| raw.entries.get(name).map_or("", String::as_str);
    let mut hasher = Sha256::new();
    hasher.update(b"appliance-machine-secret/v1\0");
    hasher.update(get(MACHINE_ID).as_bytes());
    hasher.update(b"\0");
    hasher.update(get(PRODUCT_UUID).as_bytes());
    hasher.finalize().into()
}

/// Reads a small text file; `None` when it is missing, unreadable (DMI files are
/// often root-only) or not UTF-8.
fn read_small(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES).read_to_string(&mut text).ok()?;
    Some(text)
}

/// A machine id is 32 hex digits (machine-id(5)). Docker images often ship an
/// empty file and systemd writes "uninitialized" during first boot; neither
/// identifies a machine, so they fall through to the next source.
fn usable_machine_id(text: &str) -> Option<String> {
    let id = text.trim().to_ascii_lowercase();
    let hex = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    (hex && !all_same(&id)).then_some(id)
}

/// A DMI product UUID in its canonical lower-case form, or `None` for the
/// placeholders firmware ships unset ("Not Settable", all zeros, all F's...).
fn usable_product_uuid(text: &str) -> Option<String> {
    let uuid = text.trim().to_ascii_lowercase();
    let digits: String = uuid.chars().filter(|c| *c != '-').collect();
    let shaped =
        digits.len() == 32 && digits.bytes().all(|b| b.is_ascii_hexdigit()) && uuid.len() <= 36;
    let bogus = all_same(&digits) || PLACEHOLDER_UUIDS.contains(&uuid.as_str());
    (shaped && !bogus).then_some(uuid)
}

fn all_same(text: &str) -> bool {
    let mut bytes = text.bytes();
    match bytes.next() {
        Some(first) => bytes.all(|b| b == first),
        None => true,
    }
}

/// Whether an interface name is a known kind of virtual device.
fn is_virtual_name(name: &str) -> bool {
    VIRTUAL_INTERFACE_PREFIXES
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// Whether Linux lists the interface as a software device. This catches virtual
/// interfaces whatever they are called (a bridge named `lan0`); on systems
/// without that sysfs directory nothing is excluded by it.
fn is_virtual_in_sysfs(name: &str) -> bool {
    // Interface names cannot contain '/', but the name comes from outside the
    // process, so make sure it cannot walk out of the directory.
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return true;
    }
    Path::new(SYSFS_VIRTUAL_NET).join(name).exists()
}

/// The sorted, de-duplicated (bonded interfaces share one), comma-joined MAC
/// addresses of the interfaces that pass `is_virtual`, or `None` if none does.
/// Unset, broadcast and multicast addresses are not a NIC's own and are skipped.
fn join_macs<'a>(
    interfaces: impl IntoIterator<Item = (&'a str, [u8; 6])>,
    is_virtual: impl Fn(&str) -> bool,
) -> Option<String> {
    let mut macs: Vec<String> = interfaces
        .into_iter()
        .filter(|(name, mac)| {
            let unset = mac.iter().all(|b| *b == 0);
            let multicast = mac[0] & 1 == 1; // Also covers broadcast.
            !unset && !multicast && !is_virtual_name(name) && !is_virtual(name)
        })
        .map(|(_, mac)| {
            mac.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect();
    macs.sort();
    macs.dedup();
    (!macs.is_empty()).then(|| macs.join(","))
}

fn macs() -> Option<String> {
    let networks = sysinfo::Networks::new_with_refreshed_list().ok()?;
    let interfaces: Vec<(String, [u8; 6])> = networks
        .iter()
        .filter_map(|(name, data)| Some((name.to_str()?.to_owned(), data.mac_address().0)))
        .collect();
    join_macs(
        interfaces.iter().map(|(name, mac)| (name.as_str(), *mac)),
        is_virtual_in_sysfs,
    )
}

/// The CPU brand with the logical CPU count, and the memory in whole GiB. Only
/// the CPU list and RAM are refreshed: usage, frequency and processes would
/// cost time and change from one reading to the next.
fn cpu_and_memory() -> (Option<String>, Option<String>) {
    use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
    let refresh = RefreshKind::nothing()
        .with_cpu(CpuRefreshKind::nothing())
        .with_memory(MemoryRefreshKind::nothing().with_ram());
    let Ok(system) = System::new_with_specifics(refresh) else {
        return (None, None);
    };
    let cpus = system.cpus();
    let cpu = cpus.first().map(|first| {
        let brand = first.brand().trim();
        let brand = if brand.is_empty() { "unknown" } else { brand };
        format!("{brand} x{}", cpus.len())
    });
    // Rounded down: the kernel's MemTotal moves by a few MiB between kernel
    // versions, and a box should not change identity on an upgrade.
    let total = system.total_memory();
    let memory = (total > 0).then(|| format!("{} GiB", total / GIB));
    (cpu, memory)
}

fn hostname() -> Option<String> {
    let name = sysinfo::System::host_name().ok()?;
    // Host names are case-insensitive (RFC 4343).
    let name = name.trim().to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

/// The device mounted at `/` and its size in whole GiB (rounded down, as memory).
fn root_disk() -> Option<String> {
    use sysinfo::{DiskRefreshKind, Disks};
    let disks =
        Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage()).ok()?;
    // The last mount at "/" is the one in effect: older kernels list the
    // initial "rootfs" before the real root mounted over it.
    let root = disks
        .iter()
        .rfind(|disk| disk.mount_point() == Path::new("/"))?;
    let name = root.name().to_string_lossy();
    let name = name.trim();
    let size = root.total_space() / GIB;
    (!name.is_empty() || size > 0).then(|| format!("{name} {size} GiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pairs: &[(&str, &str)]) -> RawFacts {
        RawFacts {
            entries: pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn sample() -> RawFacts {
        facts(&[
            (MACHINE_ID, "3d1219c7c4c5404aaa1f6d2a48adfda4"),
            (MACS, "02:fc:00:00:00:01"),
            (CPU, "AMD EPYC x2"),
            (MEMORY, "23 GiB"),
        ])
    }

    #[test]
    fn hashing_is_deterministic_and_salted_by_license() {
        let raw = sample();
        let a = hashed(&raw, "lic_a");
        assert_eq!(a, hashed(&raw, "lic_a"));
        let b = hashed(&raw, "lic_b");
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "names stay in clear"
        );
        for name in raw.entries.keys() {
            assert_ne!(a[name], b[name], "{name} must differ across licenses");
        }
        // The name is part of the input: equal values under two names differ.
        let twins = hashed(&facts(&[("x", "same"), ("y", "same")]), "lic_a");
        assert_ne!(twins["x"], twins["y"]);
    }

    #[test]
    fn hashed_values_hide_the_raw_ones_and_fit_the_request_shape() {
        let raw = sample();
        for (name, value) in hashed(&raw, "lic_a") {
            let original = &raw.entries[&name];
            assert!(!value.contains(original.as_str()), "{name} leaks its value");
            assert!(keys::b64::decode_array::<32>(&value).is_some());
            assert!(value.len() <= keys::proto::MAX_COMPONENT_LEN && !value.contains('='));
        }
    }

    #[test]
    fn hashing_matches_the_documented_construction() {
        // Golden value, computed independently with Python's hashlib:
        // base64url(sha256(b"appliance-fingerprint/v1\0lic_1\0machine_id\0abc")).
        let out = hashed(&facts(&[(MACHINE_ID, "abc")]), "lic_1");
        assert_eq!(out[MACHINE_ID], GOLDEN_COMPONENT);
    }

    #[test]
    fn machine_secret_follows_machine_id_and_product_uuid_only() {
        let raw = sample();
        let secret = machine_secret(&raw);
        assert_eq!(secret, machine_secret(&raw));

        let mut other_id = raw.clone();
        other_id
            .entries
            .insert(MACHINE_ID.into(), "0123456789abcdef0123456789abcdef".into());
        assert_ne!(machine_secret(&other_id), secret);

        let mut with_uuid = raw.clone();
        with_uuid.entries.insert(
            PRODUCT_UUID.into(),
            "407488fe-960a-43b5-a265-8fd0e9200b8f".into(),
        );
        assert_ne!(machine_secret(&with_uuid), secret);

        // A new NIC, more memory or a renamed host must not lock the box out of
        // its own sealed keys.
        let mut drifted = raw.clone();
        drifted
            .entries
            .insert(MACS.into(), "aa:bb:cc:dd:ee:ff".into());
        drifted.entries.insert(MEMORY.into(), "64 GiB".into());
        drifted.entries.insert(HOSTNAME.into(), "renamed".into());
        assert_eq!(machine_secret(&drifted), secret);

        // Golden value (Python hashlib): sha256(b"appliance-machine-secret/v1\0abc\0").
        let golden = machine_secret(&facts(&[(MACHINE_ID, "abc")]));
        assert_eq!(keys::b64::encode(golden), GOLDEN_SECRET);
        assert_ne!(machine_secret(&RawFacts::default()), golden);
    }

    const GOLDEN_COMPONENT: &str = "q12l9hQ4TV1XJulA0aVAt400tD_czPHB0viAmjdG7no";
    const GOLDEN_SECRET: &str = "YUvCRQ-Qlp2jiOCn0Ir1ER7ub9XV2CyhQmKP7OznenQ";

    #[test]
    fn bogus_dmi_uuids_are_filtered() {
        fn check(input: &str, expected: Option<&str>) {
            assert_eq!(usable_product_uuid(input).as_deref(), expected, "{input:?}");
        }
        check(
            "407488FE-960A-43B5-A265-8FD0E9200B8F\n",
            Some("407488fe-960a-43b5-a265-8fd0e9200b8f"),
        );
        check(
            "4c4c4544-0042-3510-8052-b4c04f384d32",
            Some("4c4c4544-0042-3510-8052-b4c04f384d32"),
        );
        check("00000000-0000-0000-0000-000000000000", None);
        check("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", None);
        check("ffffffff-ffff-ffff-ffff-ffffffffffff\n", None);
        check("03000200-0400-0500-0006-000700080009", None);
        check("Not Settable", None);
        check("Not Present", None);
        check("To Be Filled By O.E.M.", None);
        check("", None);
        check("407488fe-960a-43b5-a265", None);
        check("407488fe-960a-43b5-a265-8fd0e9200b8fzz", None);
    }

    #[test]
    fn machine_ids_must_look_like_machine_ids() {
        fn check(input: &str, expected: Option<&str>) {
            assert_eq!(usable_machine_id(input).as_deref(), expected, "{input:?}");
        }
        check(
            "3d1219c7c4c5404aaa1f6d2a48adfda4\n",
            Some("3d1219c7c4c5404aaa1f6d2a48adfda4"),
        );
        check("", None);
        check("uninitialized\n", None);
        check("00000000000000000000000000000000", None);
        check("3d1219c7c4c5404aaa1f6d2a48adfda", None);
    }

    #[test]
    fn virtual_interfaces_are_recognised_by_name() {
        for name in [
            "lo",
            "docker0",
            "veth1a2b3c",
            "br-5f2e",
            "virbr0",
            "vnet3",
            "tun0",
            "tap0",
            "wg0",
            "cni0",
            "flannel.1",
            "cali12ab",
            "ifb0",
            "tailscale0",
        ] {
            assert!(is_virtual_name(name), "{name} is virtual");
        }
        for name in [
            "eth0",
            "ens3",
            "enp0s31f6",
            "eno1",
            "wlp2s0",
            "bond0",
            "em1",
        ] {
            assert!(!is_virtual_name(name), "{name} is a NIC");
        }
    }

    #[test]
    fn macs_are_filtered_sorted_and_deduplicated() {
        let nic = [0x02, 0xfc, 0, 0, 0, 1];
        let second = [0x00, 0x1b, 0x21, 0x3a, 0x4b, 0x5c];
        let interfaces = [
            ("eth1", nic),
            ("eth0", second),
            ("bond0", nic),
            ("lo", [0; 6]),
            ("docker0", [0x02, 0x42, 0xac, 0x11, 0, 2]),
            ("eth2", [0; 6]),
            ("eth3", [0xff; 6]),
            ("eth4", [0x01, 0x00, 0x5e, 0, 0, 1]),
            ("lan0", [0x52, 0x54, 0, 0x12, 0x34, 0x56]),
        ];
        let joined = join_macs(interfaces, |name| name == "lan0");
        assert_eq!(
            joined.as_deref(),
            Some("00:1b:21:3a:4b:5c,02:fc:00:00:00:01")
        );
        assert_eq!(join_macs([("lo", [0u8; 6])], |_| false), None);
        // Names that could walk out of the sysfs directory count as virtual.
        assert!(is_virtual_in_sysfs("../x"));
        assert!(is_virtual_in_sysfs(".."));
    }

    #[test]
    fn collect_raw_reads_this_machine_without_panicking() {
        let raw = collect_raw();
        assert!(!raw.entries.is_empty(), "no component at all: {raw:?}");
        for (name, value) in &raw.entries {
            assert!(!value.is_empty(), "{name} is empty");
        }
        // Whatever was read, it hashes into a well-formed request component set.
        let components = hashed(&raw, "lic_test");
        assert_eq!(components.len(), raw.entries.len());
        assert!(components.len() <= keys::proto::MAX_COMPONENTS);
    }
}
