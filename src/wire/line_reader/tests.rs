//! Tests of the bounded line reader: lines, lines over the limit (whole or split across
//! reads), and the last line without a newline.

use tokio::io::AsyncWriteExt;

use super::*;

/// Every event `input` frames into with a limit of `max` bytes, written in pieces of at
/// most `piece` bytes; a dropped line shows the head kept of it.
async fn frames(input: &[u8], max: usize, piece: usize) -> Vec<String> {
    let (read, mut write) = tokio::io::duplex(piece);
    let input = input.to_vec();
    let writer = tokio::spawn(async move {
        for chunk in input.chunks(piece) {
            write.write_all(chunk).await.unwrap();
        }
    });
    let mut reader = BoundedLineReader::new(read, max);
    let mut seen = Vec::new();
    loop {
        match reader.next().await.unwrap() {
            Framed::Line => seen.push(format!("line {}", String::from_utf8_lossy(reader.line()))),
            Framed::OverLimit => seen.push("over".to_owned()),
            Framed::Oversized => {
                let head = reader.take_oversized_head();
                seen.push(format!("dropped {}", String::from_utf8_lossy(&head)));
            }
            Framed::End => {
                if let Some(last) = reader.unterminated_line() {
                    seen.push(format!("last {}", String::from_utf8_lossy(last)));
                }
                break;
            }
        }
    }
    writer.await.unwrap();
    seen
}

#[tokio::test]
async fn lines_are_framed_and_a_line_over_the_limit_is_dropped_with_its_head_kept() {
    for piece in [1, 3, 1024] {
        let seen = frames(b"ab\n\ncdef\n0123456789\nxy\nlast", 5, piece).await;
        assert_eq!(seen[..4], ["line ab", "line ", "line cdef", "over"], "{piece}");
        // The head is what was read when the line went over: at least the limit and one byte.
        let head = seen[4].strip_prefix("dropped ").expect("dropped");
        assert!(head.len() > 5 && "0123456789".starts_with(head), "{piece}: {head}");
        assert_eq!(seen[5..], ["line xy", "last last"], "{piece}");
    }
    // A line of exactly the limit is taken; a last line over it is not handed out.
    assert_eq!(frames(b"12345\n123456", 5, 1024).await, ["line 12345", "over"]);
    assert_eq!(frames(b"", 5, 1024).await, Vec::<String>::new());
}

#[tokio::test]
async fn the_head_of_a_huge_line_is_bounded_and_a_taken_line_buffer_is_reused() {
    let mut input = vec![b'x'; 3 * OVERSIZED_HEAD_BYTES];
    input.extend_from_slice(b"\nok\n");
    let mut reader = BoundedLineReader::new(&input[..], 10);
    assert_eq!(reader.next().await.unwrap(), Framed::OverLimit);
    assert_eq!(reader.next().await.unwrap(), Framed::Oversized);
    assert_eq!(reader.take_oversized_head().len(), OVERSIZED_HEAD_BYTES);
    assert_eq!(reader.next().await.unwrap(), Framed::Line);
    let line = reader.take_line();
    assert_eq!(line, b"ok");
    let buffer = line.as_ptr();
    reader.give_back(line);
    assert_eq!(reader.line().as_ptr(), buffer, "the buffer is reused");
    assert_eq!(reader.next().await.unwrap(), Framed::End);
    assert_eq!(reader.unterminated_line(), None);
}
