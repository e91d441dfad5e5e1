#pragma once
// PCRE2 match data and JIT stack for one thread. Neither depends on the pattern (one ovector pair
// is all the pre-tokenizers need), so one set per thread serves every compiled pattern: the GPT-2
// pre-tokenizer and the tokenizer.json Split patterns. Use as `thread_local Pcre2ThreadMatch tm;`.
// The default 32 KiB JIT stack is enough for these patterns; the 1 MiB limit only guards against
// surprises with odd inputs.
#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include "core/error.hpp"

namespace nexplain {

struct Pcre2ThreadMatch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, nullptr);
  Pcre2ThreadMatch() {
    if (!data || !context || !stack) fail("out of memory creating PCRE2 match data");
    pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~Pcre2ThreadMatch() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
  Pcre2ThreadMatch(const Pcre2ThreadMatch&) = delete;
  Pcre2ThreadMatch& operator=(const Pcre2ThreadMatch&) = delete;
};

}  // namespace nexplain
