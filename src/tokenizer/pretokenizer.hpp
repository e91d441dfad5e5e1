#pragma once
// GPT-2's pre-tokenizer: a regular expression cuts text into words (letters with an optional
// leading space, digits, punctuation runs, whitespace, English contractions); BPE then runs
// inside each word only. Matching uses PCRE2 with JIT; the compiled pattern is shared and the
// match data is per thread, so splitting is thread-safe.
//
// Bytes that are not valid UTF-8 never match the pattern (PCRE2_MATCH_INVALID_UTF); every run
// of bytes between two matches is passed on as a word of its own. Every input byte therefore
// lands in exactly one word, which makes encoding lossless for arbitrary bytes.
#include <functional>
#include <string_view>

namespace nexplain {

// Calls on_word for each word of `text`, in order; the words concatenate to `text`.
void gpt2_pretokenize(std::string_view text, const std::function<void(std::string_view)>& on_word);

// The pattern as compiled (for documentation and error messages).
const char* gpt2_pretokenizer_pattern();

}  // namespace nexplain
