//! Docker's multiplexed stream (logs, exec output without a TTY) and a minimal tar writer
//! for `PUT /containers/<c>/archive`.
//!
//! Multiplexed frame: `[stream, 0, 0, 0, size_be_u32]` followed by `size` payload bytes;
//! stream 0 = stdin, 1 = stdout, 2 = stderr. Docker API reference, "Attach to a container".
//!
//! Tar: POSIX ustar, regular files only, long names split into prefix/name; enough for the
//! handful of certificate files `install_certificates` uploads (harp-compat.md §4.4.2).

/// Size of a multiplexed frame header.
pub const FRAME_HEADER_BYTES: usize = 8;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// 0 stdin, 1 stdout, 2 stderr.
    pub stream: u8,
    pub payload: &'a [u8],
}

/// Decode as many complete frames as `buf` holds. Returns them and the number of bytes
/// consumed; an incomplete trailing frame is left for the caller to complete.
pub fn decode_frames(buf: &[u8]) -> (Vec<Frame<'_>>, usize) {
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some(header) = buf.get(at..at + FRAME_HEADER_BYTES) {
        let size = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let Some(payload) = buf.get(at + FRAME_HEADER_BYTES..at + FRAME_HEADER_BYTES + size) else {
            break;
        };
        frames.push(Frame {
            stream: header[0],
            payload,
        });
        at += FRAME_HEADER_BYTES + size;
    }
    (frames, at)
}

/// stdout and stderr of a complete multiplexed stream as text, invalid UTF-8 replaced (HaRP
/// reads exec output "ignoring invalid UTF-8"). A stream that does not look multiplexed
/// (e.g. a TTY exec) is returned as is.
pub fn demux_text(buf: &[u8]) -> String {
    let looks_muxed = buf.len() >= FRAME_HEADER_BYTES && buf[0] <= 2 && buf[1..4] == [0, 0, 0];
    if !looks_muxed {
        return String::from_utf8_lossy(buf).into_owned();
    }
    let (frames, _) = decode_frames(buf);
    let bytes: Vec<u8> = frames
        .iter()
        .filter(|f| f.stream != 0)
        .flat_map(|f| f.payload.iter().copied())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

const TAR_BLOCK: usize = 512;

/// Build a tar archive of regular files (mode 0644, owner root), names relative
/// (no leading `/`). `None` if a name cannot be stored in ustar (longer than 255 bytes
/// without a `/` split point).
pub fn tar_files(files: &[(String, Vec<u8>)]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for (name, data) in files {
        out.extend_from_slice(&ustar_header(name.trim_start_matches('/'), data.len())?);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(TAR_BLOCK) * TAR_BLOCK, 0);
    }
    out.resize(out.len() + 2 * TAR_BLOCK, 0);
    Some(out)
}

fn ustar_header(path: &str, size: usize) -> Option<[u8; TAR_BLOCK]> {
    let (prefix, name) = split_ustar_name(path)?;
    let mut h = [0u8; TAR_BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    put_octal(&mut h[100..108], 0o644);
    put_octal(&mut h[108..116], 0);
    put_octal(&mut h[116..124], 0);
    put_octal(&mut h[124..136], size as u64);
    put_octal(&mut h[136..148], 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    // The checksum is computed with its own field set to spaces.
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let digits = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(digits.as_bytes());
    Some(h)
}

/// ustar stores up to 100 bytes of name plus up to 155 bytes of prefix (joined by `/`).
fn split_ustar_name(path: &str) -> Option<(&str, &str)> {
    if path.len() <= 100 {
        return Some(("", path));
    }
    path.char_indices()
        .filter(|&(i, c)| c == '/' && i <= 155 && path.len() - i - 1 <= 100 && i > 0)
        .map(|(i, _)| (&path[..i], &path[i + 1..]))
        .next()
}

/// Zero-padded octal with a terminating NUL, filling the field.
fn put_octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    let text = &text.as_bytes()[text.len().saturating_sub(width)..];
    field[..width].copy_from_slice(text);
    field[width] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![stream, 0, 0, 0];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn frames_decode_across_streams_and_partial_tail() {
        let mut buf = frame(1, b"out\n");
        buf.extend(frame(2, b"err\n"));
        buf.extend(frame(1, b""));
        let full = buf.len();
        buf.extend(&frame(1, b"partial")[..10]);
        let (frames, used) = decode_frames(&buf);
        assert_eq!(used, full);
        assert_eq!(
            frames,
            vec![
                Frame {
                    stream: 1,
                    payload: b"out\n"
                },
                Frame {
                    stream: 2,
                    payload: b"err\n"
                },
                Frame {
                    stream: 1,
                    payload: b""
                },
            ]
        );
        assert_eq!(decode_frames(&buf[..7]), (vec![], 0));
    }

    #[test]
    fn demux_text_rows() {
        let mut muxed = frame(1, b"ID=debian\n");
        muxed.extend(frame(2, b"warn \xff\n"));
        let rows: [(&[u8], &str); 3] = [
            (&muxed, "ID=debian\nwarn \u{fffd}\n"),
            (b"plain tty output", "plain tty output"),
            (b"", ""),
        ];
        for (input, want) in rows {
            assert_eq!(demux_text(input), want);
        }
    }

    #[test]
    fn tar_layout() {
        let files = vec![("/certs/frp/ca.crt".to_string(), b"abc".to_vec())];
        let tar = tar_files(&files).unwrap();
        assert_eq!(tar.len(), 512 + 512 + 1024);
        assert_eq!(&tar[..15], b"certs/frp/ca.crt"[..15].as_ref());
        assert_eq!(&tar[124..136], b"00000000003\0");
        assert_eq!(&tar[257..263], b"ustar\0");
        assert_eq!(&tar[512..515], b"abc");
        let sum: u32 = tar[..512]
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(b)
                }
            })
            .sum();
        let stored = std::str::from_utf8(&tar[148..154]).unwrap();
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
    }

    #[test]
    fn tar_long_names_use_prefix() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let tar = tar_files(&[(long, vec![])]).unwrap();
        assert_eq!(&tar[..90], "f".repeat(90).as_bytes());
        assert_eq!(&tar[345..465], "d".repeat(120).as_bytes());
        assert!(tar_files(&[("x".repeat(300), vec![])]).is_none());
    }
}
