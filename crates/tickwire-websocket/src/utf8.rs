//! UTF-8 validation of a message that arrives in pieces.

use crate::Error;

/// Validates a byte sequence given in pieces of any size, failing at the
/// first piece that makes it invalid rather than at the end (RFC 6455 §8.1:
/// a server should fail fast on invalid text).
///
/// The validation itself is the standard library's; this only carries a
/// character cut by a piece boundary (at most three bytes) to the next piece.
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    /// The first bytes of a character that the last piece ended in.
    pending: [u8; 4],
    pending_len: usize,
}

impl Utf8Validator {
    /// A validator at the start of a sequence.
    pub fn new() -> Utf8Validator {
        Utf8Validator::default()
    }

    /// Adds the next piece; [`Error::InvalidUtf8`] once the sequence can no
    /// longer be UTF-8, whatever follows.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), Error> {
        // Complete a character the last piece cut, a byte at a time.
        while self.pending_len > 0 {
            let Some((&b, rest)) = piece.split_first() else {
                return Ok(());
            };
            piece = rest;
            self.pending[self.pending_len] = b;
            self.pending_len += 1;
            match std::str::from_utf8(&self.pending[..self.pending_len]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_some() => return Err(Error::InvalidUtf8),
                // Still incomplete: at most four bytes, so this ends.
                Err(_) => {}
            }
        }
        match std::str::from_utf8(piece) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(Error::InvalidUtf8),
            Err(e) => {
                // A character cut by the end of the piece.
                let tail = &piece[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
                Ok(())
            }
        }
    }

    /// Ends the sequence: [`Error::InvalidUtf8`] when it ends inside a
    /// character. The validator is ready for a new sequence either way.
    pub fn finish(&mut self) -> Result<(), Error> {
        let whole = self.pending_len == 0;
        self.pending_len = 0;
        if whole {
            Ok(())
        } else {
            Err(Error::InvalidUtf8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Validates `bytes` cut at every position into two pieces, and one byte
    /// at a time.
    fn every_split(bytes: &[u8]) -> Vec<bool> {
        let mut results = Vec::new();
        for cut in 0..=bytes.len() {
            let mut v = Utf8Validator::new();
            let ok = v.feed(&bytes[..cut]).is_ok()
                && v.feed(&bytes[cut..]).is_ok()
                && v.finish().is_ok();
            results.push(ok);
        }
        let mut v = Utf8Validator::new();
        results.push(bytes.iter().all(|b| v.feed(&[*b]).is_ok()) && v.finish().is_ok());
        results
    }

    #[test]
    fn agrees_with_the_standard_library_at_every_split() {
        for bytes in [
            "κόσμε".as_bytes(),
            "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
            "\u{10FFFF}\u{FFFD}".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edited",
            b"\xed\xa0\x80",
            b"\xc0\xaf",
            b"abc\xe1\xbd",
            b"",
        ] {
            let expected = std::str::from_utf8(bytes).is_ok();
            for (i, ok) in every_split(bytes).into_iter().enumerate() {
                assert_eq!(ok, expected, "{bytes:x?} split {i}");
            }
        }
    }

    #[test]
    fn fails_at_the_first_invalid_byte() {
        // Autobahn 6.4.1: the invalid code point starts in the second piece
        // and is refused there, before the third.
        let mut v = Utf8Validator::new();
        assert!(
            v.feed(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")
                .is_ok()
        );
        assert!(v.feed(b"\xf4\x90").is_err());
        // A lead byte alone is only incomplete...
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"ab\xf4").is_ok());
        // ...until the next piece shows it cannot continue.
        assert!(v.feed(b"\x90").is_err());
    }

    #[test]
    fn a_sequence_cut_at_the_end_is_invalid() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xe2\x82").is_ok());
        assert!(v.finish().is_err());
        // Ready again.
        assert!(v.feed(b"ok").is_ok());
        assert!(v.finish().is_ok());
    }
}
