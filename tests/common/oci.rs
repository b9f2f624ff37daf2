//! OCI content made offline: digests, unique bytes, images, OCI layouts for skopeo, pushes straight
//! to a registry, docker config files.

use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use super::*;

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `sha256:HEX` of `data`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// `sha256:HEX` of a file, read in streaming fashion.
pub fn digest_file(path: &Path) -> String {
    let mut file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).expect("read file to hash");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Bytes that differ from one call to the next (so images of different tests never share a
/// layer).
pub fn unique_bytes(len: usize) -> Vec<u8> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0) as u64;
    let mut seed = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed = xorshift(seed);
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub(crate) fn xorshift(mut x: u64) -> u64 {
    if x == 0 {
        x = 0x9E37_79B9_7F4A_7C15;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A one-layer OCI image held in memory (the layer is any bytes, labelled tar+gzip).
#[derive(Clone, Debug)]
pub struct Image {
    pub layer: Vec<u8>,
    pub layer_digest: String,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

impl Image {
    pub fn new(layer: &[u8]) -> Image {
        Self::describe(layer.to_vec(), digest(layer), layer.len() as u64, None)
    }

    /// An image the Docker engine can unpack: one gzip'd tar holding one unique file, and a
    /// config whose `diff_ids` is the tar's digest.
    pub fn runnable() -> Image {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join("hello.txt"), hex::encode(unique_bytes(32))).expect("write file");
        let tar = Command::new("tar")
            .arg("-C")
            .arg(dir.path())
            .args(["-cf", "-", "hello.txt"])
            .output()
            .expect("run tar");
        assert!(tar.status.success(), "tar: {}", show_output(&tar));
        let mut gzip = Command::new("gzip")
            .args(["-n", "-c"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run gzip");
        let mut stdin = gzip.stdin.take().expect("gzip stdin");
        let data = tar.stdout.clone();
        let writer = thread::spawn(move || stdin.write_all(&data));
        let gz = gzip.wait_with_output().expect("gzip output");
        writer.join().expect("gzip writer").expect("write to gzip");
        assert!(gz.status.success(), "gzip failed");
        let layer_digest = digest(&gz.stdout);
        let size = gz.stdout.len() as u64;
        Self::describe(gz.stdout, layer_digest, size, Some(digest(&tar.stdout)))
    }

    /// An image of `len` bytes of layer unique to this call.
    pub fn unique(len: usize) -> Image {
        Image::new(&unique_bytes(len))
    }

    pub(crate) fn describe(
        layer: Vec<u8>,
        layer_digest: String,
        layer_size: u64,
        diff_id: Option<String>,
    ) -> Image {
        let diff_id = diff_id.unwrap_or_else(|| layer_digest.clone());
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }))
        .expect("config JSON");
        let config_digest = digest(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer_size}],
        }))
        .expect("manifest JSON");
        let manifest_digest = digest(&manifest);
        Image {
            layer,
            layer_digest,
            config,
            config_digest,
            manifest,
            manifest_digest,
        }
    }
}

pub(crate) fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

pub(crate) fn write_layout_metadata(dir: &Path, image: &Image) {
    fs::create_dir_all(dir.join("blobs/sha256")).expect("create OCI layout");
    fs::write(
        dir.join("oci-layout"),
        b"{\"imageLayoutVersion\":\"1.0.0\"}",
    )
    .expect("write oci-layout");
    fs::write(blob_path(dir, &image.config_digest), &image.config).expect("write config blob");
    fs::write(blob_path(dir, &image.manifest_digest), &image.manifest)
        .expect("write manifest blob");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": image.manifest_digest,
            "size": image.manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("index JSON"),
    )
    .expect("write index.json");
}

/// Write an OCI image layout at `dir` (tag `latest`) whose one layer is `layer`; skopeo reads
/// it as `oci:DIR:latest`.
pub fn oci_layout(dir: &Path, layer: &[u8]) -> Image {
    let image = Image::new(layer);
    write_layout_metadata(dir, &image);
    fs::write(blob_path(dir, &image.layer_digest), layer).expect("write layer blob");
    image
}

/// Write an OCI image layout at `dir` whose one layer is `size` pseudo-random bytes, generated
/// and hashed in 1 MiB pieces, never held in memory. The returned image's `layer` is empty.
pub fn oci_layout_big(dir: &Path, size: u64) -> Image {
    fs::create_dir_all(dir.join("blobs/sha256")).expect("create OCI layout");
    let tmp = dir.join("blobs/sha256/layer.partial");
    let mut file = io::BufWriter::new(File::create(&tmp).expect("create layer file"));
    let mut hasher = Sha256::new();
    let mut seed = u64::from_le_bytes(unique_bytes(8).try_into().expect("8 bytes"));
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            seed = xorshift(seed);
            word.copy_from_slice(&seed.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).expect("write layer file");
        left -= n as u64;
    }
    file.flush().expect("flush layer file");
    drop(file);
    let layer_digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    let image = Image::describe(Vec::new(), layer_digest, size, None);
    fs::rename(&tmp, blob_path(dir, &image.layer_digest)).expect("name layer blob by digest");
    write_layout_metadata(dir, &image);
    image
}

/// The path of a blob inside an OCI layout.
pub fn oci_blob(dir: &Path, digest: &str) -> PathBuf {
    blob_path(dir, digest)
}

/// The manifest digest an OCI layout's `index.json` names first.
pub fn oci_manifest_digest(dir: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).expect("read index.json"))
            .expect("index.json is JSON");
    index["manifests"][0]["digest"]
        .as_str()
        .expect("index.json names a manifest")
        .to_string()
}

/// Upload one blob monolithically: `POST /v2/REPO/blobs/uploads/`, then `PUT LOCATION&digest=`.
pub fn push_blob(base: &str, auth: Auth, repo: &str, data: &[u8]) -> Result<(), Reply> {
    let c = client();
    let start = Reply::from_request(auth.apply(c.post(format!("{base}/v2/{repo}/blobs/uploads/"))));
    if start.status != 202 {
        return Err(start);
    }
    let location = start.header("Location").ok_or_else(|| start.clone())?;
    let url = add_query(&absolute(base, location), "digest", &digest(data));
    let put = Reply::from_request(
        auth.apply(c.put(url))
            .header("Content-Type", "application/octet-stream")
            .body(data.to_vec()),
    );
    if put.status != 201 {
        return Err(put);
    }
    Ok(())
}

/// Resolve a `Location` against `base`.
pub fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("{base}{location}")
    }
}

/// Push `image` as `repo:tag` over HTTP (layer, config, manifest).
pub fn push_image(
    base: &str,
    auth: Auth,
    repo: &str,
    tag: &str,
    image: &Image,
) -> Result<(), Reply> {
    push_blob(base, auth, repo, &image.layer)?;
    push_blob(base, auth, repo, &image.config)?;
    let put = Reply::from_request(
        auth.apply(client().put(format!("{base}/v2/{repo}/manifests/{tag}")))
            .header("Content-Type", OCI_MANIFEST)
            .body(image.manifest.clone()),
    );
    if put.status != 201 {
        return Err(put);
    }
    Ok(())
}
