#pragma once
// Where a long text may be cut so that tokenizing the pieces separately gives exactly the
// tokens of the whole: that lets one huge document be read in chunks and tokenized in parallel.
//
// Cut point p (the second piece starts at text[p]) is safe when
//   (a) text[p-1] is '\n', text[p-2] and text[p] are printable ASCII other than space, or
//   (b) text[p] is ' ', text[p-1] and text[p+1] are printable ASCII other than space.
// Why: no word of GPT-2's pattern can run from a non-space character into following whitespace
// (only whitespace runs contain whitespace, and they cannot start at a non-space), and the only
// look-ahead, \s+(?!\S), looks one character past a whitespace run, which here stays on its
// own side. In (a) the lone '\n' is a word whether or not text follows (`\s+` whole; `\s+(?!\S)`
// at the end); in (b) the space always starts the next word (` ?\p{L}+`, ` ?\p{N}+` or
// ` ?[^\s\p{L}\p{N}]+`, since text[p+1] is a letter, digit or punctuation). ASCII on both sides
// also keeps every cut on a UTF-8 character boundary. BPE runs within words, so it is unaffected.
#include <cstddef>
#include <string_view>
#include <vector>

namespace nexplain {

// Whether cutting `text` before text[p] is safe (see above). Needs text[p+1] for rule (b), so
// a cut is never reported in the last byte position.
bool is_safe_split(std::string_view text, std::size_t p);

// The largest safe cut p with min_pos <= p <= max_pos, or 0 when there is none.
std::size_t find_safe_split(std::string_view text, std::size_t min_pos, std::size_t max_pos);

// Cuts `text` into pieces of about `target` bytes at safe points; a piece grows past `target`
// only where no safe point exists. Pieces concatenate to `text`.
std::vector<std::string_view> split_safely(std::string_view text, std::size_t target);

}  // namespace nexplain
