#pragma once
// Slurm time limits ("--time"): "minutes", "minutes:seconds", "hours:minutes:seconds",
// "days-hours", "days-hours:minutes", "days-hours:minutes:seconds", as sbatch accepts them.
#include <cstdint>
#include <string>

namespace nexplain {

// Seconds; Error quoting the text when it is none of sbatch's forms ("UNLIMITED" included:
// a sweep must say how long its jobs may run, or leave the key out).
std::int64_t parse_slurm_time(const std::string& text);

}  // namespace nexplain
