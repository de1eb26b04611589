//! Reading a line with a bound on what is held: a line longer than the
//! bound is read to its end without being kept (only its length is), so an
//! input of one enormous line costs a buffer, not its size in memory.
//! Used for JSON Lines records and `distex json` requests.

use std::io::{self, BufRead};

/// What [`read_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line {
    /// The input ended before any byte.
    End,
    /// A line is in the buffer (with its `\n`, unless the input ended).
    Read,
    /// A line of `bytes` bytes (line break included), longer than allowed:
    /// skipped, the buffer is empty.
    TooLong { bytes: u64 },
}

/// Reads the next line of `input` into `buf` (cleared first), keeping at
/// most `max` bytes of it.
pub(crate) fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    buf.clear();
    let (mut bytes, mut too_long) = (0u64, false);
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        let (taken, ended) = match memchr::memchr(b'\n', available) {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        bytes += taken as u64;
        if !too_long && buf.len() + taken > max {
            too_long = true;
            buf.clear();
            buf.shrink_to(max.min(1 << 20));
        }
        if !too_long {
            buf.extend_from_slice(&available[..taken]);
        }
        input.consume(taken);
        if ended {
            break;
        }
    }
    Ok(match (bytes, too_long) {
        (0, _) => Line::End,
        (bytes, true) => Line::TooLong { bytes },
        _ => Line::Read,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_skipped_with_their_length() {
        let text = b"short\nxxxxxxxxxxxxxxxxxxxx\nlast";
        let mut input = io::BufReader::with_capacity(4, &text[..]);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            let line = read_line(&mut input, &mut buf, 8).unwrap();
            if line == Line::End {
                break;
            }
            got.push((line, String::from_utf8_lossy(&buf).into_owned()));
        }
        assert_eq!(
            got,
            [
                (Line::Read, "short\n".to_string()),
                (Line::TooLong { bytes: 21 }, String::new()),
                (Line::Read, "last".to_string())
            ]
        );
    }
}
