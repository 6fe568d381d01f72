//! Tamper campaign (reliability goal G7): at least 1,000 mutated backup chains — byte flips at
//! random offsets of random files, truncations, appended garbage, chunk swaps, duplications
//! and deletions, raw and resealed manifest edits, chunks replayed from another backup (by
//! file, and with the manifest forged to match), symbolic links, missing or substituted
//! parents. Every mutation must be detected by `verify` and by `restore` before the target
//! sees a single write (a counting backend proves it), the target must stay empty, and intact
//! copies must verify and restore without a false alarm.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod backup_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backup_common::{
    Counting, Rng, State, copy_dir, create_collections, is_empty, open, open_engine, retaining,
    runtime, state_at, workload,
};
use zcore_engine::Engine;
use zcore_engine::backup::{self, BackupOptions, Manifest, frame};

const MUTATIONS: usize = 1_200;
const INTACT: usize = 100;

fn at(secs: u64) -> Option<SystemTime> {
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// The pristine material: the chain `full` ← `incr`, and look-alike backups of the same
/// store (`other_full`, `other_incr`) to replay chunks from.
struct Material {
    root: PathBuf,
    expected: State,
    head: u64,
}

impl Material {
    fn chain(&self) -> PathBuf {
        self.root.join("chain")
    }
    fn others(&self) -> PathBuf {
        self.root.join("others")
    }
}

async fn material(root: &Path) -> Material {
    let engine = Engine::open(open("fjall", &root.join("src")), retaining())
        .await
        .unwrap();
    create_collections(&engine).await;
    let mut rng = Rng(0x7A3B);
    workload(&engine, &mut rng, 200, 400).await;
    let chain = root.join("chain");
    let others = root.join("others");
    std::fs::create_dir_all(&chain).unwrap();
    std::fs::create_dir_all(&others).unwrap();
    let full_opts = BackupOptions {
        include_history: true,
        chunk_bytes: 4 << 10,
        created_at: at(1_000),
        ..BackupOptions::default()
    };
    engine
        .create_backup(chain.join("full"), &full_opts)
        .await
        .unwrap();
    engine
        .create_backup(
            others.join("other_full"),
            &BackupOptions {
                created_at: at(2_000),
                ..full_opts.clone()
            },
        )
        .await
        .unwrap();
    workload(&engine, &mut rng, 80, 400).await;
    let incr_opts = BackupOptions {
        incremental_from: Some(chain.join("full")),
        compress: false,
        chunk_bytes: 4 << 10,
        created_at: at(3_000),
        ..BackupOptions::default()
    };
    let meta = engine
        .create_backup(chain.join("incr"), &incr_opts)
        .await
        .unwrap();
    // Same parent, same versions, another id: its chunks are look-alikes of `incr`'s.
    copy_dir(&chain.join("full"), &others.join("full"));
    engine
        .create_backup(
            others.join("other_incr"),
            &BackupOptions {
                incremental_from: Some(others.join("full")),
                created_at: at(4_000),
                ..incr_opts
            },
        )
        .await
        .unwrap();
    let head = meta.version;
    let (_, expected) = state_at(&engine, head).await;
    engine.close().await.unwrap();
    Material {
        root: root.to_path_buf(),
        expected,
        head,
    }
}

fn chunk_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("chunk-")
        })
        .collect();
    v.sort();
    v
}

fn all_files(case: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for b in ["full", "incr"] {
        v.extend(chunk_files(&case.join(b)));
        v.push(case.join(b).join("manifest"));
    }
    v
}

fn pick<'a, T>(rng: &mut Rng, v: &'a [T]) -> &'a T {
    &v[rng.below(v.len() as u64) as usize]
}

fn load_manifest(dir: &Path) -> Manifest {
    let path = dir.join("manifest");
    backup::decode_manifest(&path, &std::fs::read(&path).unwrap())
        .unwrap()
        .0
}

fn reseal(dir: &Path, m: &Manifest) {
    let (bytes, _) = backup::encode_manifest(m).unwrap();
    std::fs::write(dir.join("manifest"), bytes).unwrap();
}

/// Applies mutation number `i` to the chain in `case`; returns its kind.
fn mutate(i: usize, rng: &mut Rng, case: &Path, material: &Material) -> &'static str {
    let backup = case.join(if rng.below(2) == 0 { "full" } else { "incr" });
    match i % 12 {
        0 => {
            let f = pick(rng, &all_files(case)).clone();
            let mut b = std::fs::read(&f).unwrap();
            let at = rng.below(b.len() as u64) as usize;
            b[at] ^= 1 + rng.below(255) as u8;
            std::fs::write(&f, b).unwrap();
            "byte flip"
        }
        1 => {
            let f = pick(rng, &all_files(case)).clone();
            let b = std::fs::read(&f).unwrap();
            let len = rng.below(b.len() as u64) as usize;
            std::fs::write(&f, &b[..len]).unwrap();
            "truncation"
        }
        2 => {
            let f = pick(rng, &all_files(case)).clone();
            let mut b = std::fs::read(&f).unwrap();
            let n = 1 + rng.below(64) as usize;
            b.extend(rng.bytes(n));
            std::fs::write(&f, b).unwrap();
            "appended garbage"
        }
        3 => {
            let files = chunk_files(&backup);
            let a = rng.below(files.len() as u64) as usize;
            let b = (a + 1 + rng.below(files.len() as u64 - 1) as usize) % files.len();
            let (ba, bb) = (
                std::fs::read(&files[a]).unwrap(),
                std::fs::read(&files[b]).unwrap(),
            );
            std::fs::write(&files[a], bb).unwrap();
            std::fs::write(&files[b], ba).unwrap();
            "chunk swap"
        }
        4 => {
            let files = chunk_files(&backup);
            let a = rng.below(files.len() as u64) as usize;
            let b = (a + 1 + rng.below(files.len() as u64 - 1) as usize) % files.len();
            std::fs::copy(&files[a], &files[b]).unwrap();
            "chunk duplication"
        }
        5 => {
            let f = pick(rng, &chunk_files(&backup)).clone();
            std::fs::remove_file(f).unwrap();
            "chunk deletion"
        }
        6 => {
            // Edit the manifest body and fix the frame CRC: only the digest can tell.
            let path = backup.join("manifest");
            let mut b = std::fs::read(&path).unwrap();
            let at = frame::HEADER_LEN + rng.below((b.len() - frame::HEADER_LEN) as u64) as usize;
            b[at] ^= 1 + rng.below(255) as u8;
            frame::fill_header(frame::FrameKind::Manifest, &mut b).unwrap();
            std::fs::write(&path, b).unwrap();
            "manifest edit (frame CRC fixed)"
        }
        7 => {
            // A consistent forger: edit a data-bearing field and reseal the digest.
            let mut m = load_manifest(&backup);
            let is_head = backup.ends_with("incr");
            let c = rng.below(m.chunks.len() as u64) as usize;
            match rng.below(8) {
                0 => m.chunks[c].size += 1,
                1 => m.chunks[c].crc32c ^= 1 << rng.below(32),
                2 => m.chunks[c].blake3.0[rng.below(32) as usize] ^= 1,
                3 => {
                    // Drop a chunk from the list and fix the counts.
                    let gone = m.chunks.remove(c);
                    let col = &mut m.collections[gone.collection as usize];
                    col.chunks -= 1;
                    col.entries -= gone.entries;
                }
                4 => {
                    // Reorder two chunks of one collection.
                    let col = m.chunks[c].collection;
                    if let Some(d) =
                        (0..m.chunks.len()).find(|&d| d != c && m.chunks[d].collection == col)
                    {
                        m.chunks.swap(c, d);
                    } else {
                        m.chunks[c].entries += 1;
                        m.collections[col as usize].entries += 1;
                    }
                }
                5 => {
                    let col = &mut m.collections[m.chunks[c].collection as usize];
                    match rng.below(3) {
                        0 => col.bytes += 1,
                        1 if col.tombstones < col.entries => col.tombstones += 1,
                        1 => col.tombstones -= 1,
                        _ => {
                            col.entries += 1;
                            m.chunks[c].entries += 1;
                        }
                    }
                }
                6 if is_head => m.base_version -= 1,
                6 => m.head_version -= 1,
                _ if is_head => m.head_version = m.base_version,
                _ => {
                    m.collections[m.chunks[c].collection as usize]
                        .state_digest
                        .0[0] ^= 1
                }
            }
            reseal(&backup, &m);
            "manifest edit (resealed)"
        }
        8 => {
            // Replay a chunk file of a look-alike backup under the same name.
            let (ours, theirs) = if backup.ends_with("incr") {
                (case.join("incr"), material.others().join("other_incr"))
            } else {
                (case.join("full"), material.others().join("other_full"))
            };
            let files = chunk_files(&ours);
            let f = pick(rng, &files);
            std::fs::copy(theirs.join(f.file_name().unwrap()), f).unwrap();
            "replayed chunk"
        }
        9 => {
            // Replay and forge the manifest to match the replayed file's size and digests.
            let ours = case.join("incr");
            let theirs = material.others().join("other_incr");
            let mut m = load_manifest(&ours);
            let c = rng.below(m.chunks.len() as u64) as usize;
            let name = m.chunks[c].file.clone();
            let bytes = std::fs::read(theirs.join(&name)).unwrap();
            std::fs::write(ours.join(&name), &bytes).unwrap();
            m.chunks[c].size = bytes.len() as u64;
            m.chunks[c].crc32c = crc32c(&bytes);
            m.chunks[c].blake3 = backup::Digest::of(&bytes);
            reseal(&ours, &m);
            "replayed chunk (manifest forged)"
        }
        10 => match rng.below(3) {
            0 => {
                std::fs::remove_dir_all(case.join("full")).unwrap();
                "missing parent"
            }
            1 => {
                // Another full backup where the parent should be.
                std::fs::remove_dir_all(case.join("full")).unwrap();
                copy_dir(&material.others().join("other_full"), &case.join("full"));
                "substituted parent"
            }
            _ => {
                std::fs::remove_file(case.join("full").join("manifest")).unwrap();
                "parent without manifest"
            }
        },
        _ => {
            let f = pick(rng, &chunk_files(&backup)).clone();
            let outside = case.join(format!("outside-{}", rng.next()));
            std::fs::rename(&f, &outside).unwrap();
            link_or_copy_garbage(&outside, &f);
            "symbolic link"
        }
    }
}

#[cfg(unix)]
fn link_or_copy_garbage(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[cfg(not(unix))]
fn link_or_copy_garbage(_target: &Path, link: &Path) {
    std::fs::write(link, b"not a chunk").unwrap();
}

fn crc32c(bytes: &[u8]) -> u32 {
    // CRC32C (Castagnoli), bitwise: the test does not need speed.
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[derive(Default)]
struct Counts {
    mutations: usize,
    detected_by_verify: usize,
    detected_before_write: usize,
    partial_restores: usize,
    nonempty_targets: usize,
    by_kind: BTreeMap<&'static str, usize>,
    by_check: BTreeMap<String, usize>,
    undetected: Vec<String>,
}

#[test]
fn tamper_campaign_detects_every_mutation_before_writing() {
    runtime().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let material = material(tmp.path()).await;
        let full_files = chunk_files(&material.chain().join("full")).len();
        let incr_files = chunk_files(&material.chain().join("incr")).len();
        assert!(full_files >= 4 && incr_files >= 3, "{full_files} {incr_files}");
        let mut rng = Rng(0xBAD5EED);
        let mut counts = Counts::default();
        let started = std::time::Instant::now();
        for i in 0..MUTATIONS {
            let case = tmp.path().join("cases").join(format!("case{i}"));
            copy_dir(&material.chain(), &case);
            let kind = mutate(i, &mut rng, &case, &material);
            counts.mutations += 1;
            *counts.by_kind.entry(kind).or_default() += 1;
            let head = case.join("incr");
            match backup::verify(&head).await {
                Ok(_) => counts.undetected.push(format!("case {i}: {kind} (verify)")),
                Err(e) => {
                    counts.detected_by_verify += 1;
                    *counts.by_check.entry(e.check().to_string()).or_default() += 1;
                }
            }
            // Every 100th case also restores into fjall and redb files.
            let kinds: &[&str] = if i % 100 == 0 {
                &["memory", "fjall", "redb"]
            } else {
                &["memory"]
            };
            for (t, target_kind) in kinds.iter().enumerate() {
                let place = case.join(format!("target{t}"));
                std::fs::create_dir_all(&place).unwrap();
                let inner = open(target_kind, &place);
                let target = Counting::new(Arc::clone(&inner));
                match backup::restore(&head, target.clone(), None).await {
                    Ok(_) => counts
                        .undetected
                        .push(format!("case {i}: {kind} (restore into {target_kind})")),
                    Err(_) => {
                        if target.mutations() == 0 {
                            counts.detected_before_write += 1;
                        } else {
                            counts.partial_restores += 1;
                        }
                        if !is_empty(&*inner).await {
                            counts.nonempty_targets += 1;
                        }
                    }
                }
                inner.close().await.unwrap();
            }
            std::fs::remove_dir_all(&case).unwrap();
        }
        let campaign = started.elapsed();

        // False alarms: intact copies verify and restore to the exact state.
        let mut false_alarms = 0;
        for i in 0..INTACT {
            let case = tmp.path().join("intact").join(format!("copy{i}"));
            copy_dir(&material.chain(), &case);
            let head = case.join("incr");
            let verified = backup::verify(&head).await.is_ok();
            let target = open(if i % 10 == 0 { "redb" } else { "memory" }, &case);
            let restored = backup::restore(&head, Arc::clone(&target), None).await.is_ok();
            let ok = verified && restored && {
                let engine = open_engine(target).await;
                let (_, state) = state_at(&engine, material.head).await;
                engine.close().await.unwrap();
                state == material.expected
            };
            if !ok {
                false_alarms += 1;
            }
            std::fs::remove_dir_all(&case).unwrap();
        }

        println!(
            "tamper campaign: {} mutations in {:.1} s ({} chunk files in full, {} in incr)",
            counts.mutations,
            campaign.as_secs_f64(),
            full_files,
            incr_files
        );
        for (kind, n) in &counts.by_kind {
            println!("  {kind:<34} {n}");
        }
        println!(
            "  detected by verify: {}/{}; restores failed before any write: {}; partial restores: {}; non-empty targets after failure: {}",
            counts.detected_by_verify,
            counts.mutations,
            counts.detected_before_write,
            counts.partial_restores,
            counts.nonempty_targets
        );
        println!("  failed checks: {:?}", counts.by_check);
        println!("  intact copies: {INTACT}, false alarms: {false_alarms}");
        assert!(counts.mutations >= 1_000);
        assert!(
            counts.undetected.is_empty(),
            "undetected: {:?}",
            counts.undetected
        );
        assert_eq!(counts.detected_by_verify, counts.mutations);
        assert_eq!(counts.partial_restores, 0);
        assert_eq!(counts.nonempty_targets, 0);
        assert_eq!(false_alarms, 0);
    });
}
