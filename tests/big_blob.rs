//! A 512 MiB blob pushed and pulled back through regate with skopeo: the digest matches and
//! regate's peak RSS stays under 64 MiB, i.e. nothing buffers a blob (docs/behaviour.md §6).

mod common;

use common::*;

const SIZE: u64 = 512 * 1024 * 1024;
const RSS_LIMIT_KIB: u64 = 64 * 1024;

#[test]
fn blob_of_512_mib_round_trips_in_bounded_memory() {
    let env = Env::with_projects();
    let src = env.dir().join("big");
    let image = oci_layout_big(&src, SIZE);
    let builder = env.token("builder", "project-a");
    let default = env.token("default", "project-a");

    let push = env.skopeo_copy(
        &env.oci_ref("big"),
        &env.docker_ref("project-a/big:v1"),
        Some(&builder),
    );
    env.expect_success(&push, "skopeo push of 512 MiB through regate");
    let after_push = peak_rss_kib(env.regate_pid());
    // the source layout is no longer needed; free the disk before pulling
    std::fs::remove_dir_all(&src).expect("remove source layout");

    let pull = env.skopeo_copy(
        &env.docker_ref("project-a/big:v1"),
        &env.oci_ref("back"),
        Some(&default),
    );
    env.expect_success(&pull, "skopeo pull of 512 MiB through regate");
    let peak = peak_rss_kib(env.regate_pid());

    let back = env.dir().join("back");
    assert_eq!(
        oci_manifest_digest(&back),
        image.manifest_digest,
        "manifest digest"
    );
    let layer = oci_blob(&back, &image.layer_digest);
    assert_eq!(
        std::fs::metadata(&layer).expect("pulled layer").len(),
        SIZE,
        "pulled layer size"
    );
    assert_eq!(
        digest_file(&layer),
        image.layer_digest,
        "pulled layer content"
    );

    assert!(
        after_push < RSS_LIMIT_KIB && peak < RSS_LIMIT_KIB,
        "regate's peak RSS must stay under {RSS_LIMIT_KIB} KiB: {after_push} KiB after the push, {peak} KiB after the pull"
    );
    eprintln!("regate peak RSS: {after_push} KiB after push, {peak} KiB after pull");
}
