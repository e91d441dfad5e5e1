#pragma once
// Where a run's files are. `nexplain serve` / `report --html` accept, per RESULTS argument, a
// sweep directory (holding explain/ and records.h5), an explain output directory (journal.jsonl,
// results.jsonl, summary.json) or a results.jsonl file; the records file is found next to it
// (summary.json names it) unless given.
#include <filesystem>
#include <string>

namespace nexplain::viewer {

struct RunPaths {
  std::string name;                    // shown in titles: the sweep (or explain) directory's name
  std::filesystem::path sweep_dir;     // empty when the argument was not a sweep directory
  std::filesystem::path explain_dir;   // journal.jsonl, results.jsonl, summary.json
  std::filesystem::path results_file;  // a results.jsonl given explicitly; else explain_dir's
  std::filesystem::path records;       // empty when none was found (pages then show no excerpts);
                                       // a sweep's records.h5 may appear later

  // The file the index reads now: results.jsonl once the explain stage finished, else the journal
  // of the running stage; empty when neither exists yet.
  std::filesystem::path current_results() const;
};

// Resolves one RESULTS argument. `records` overrides the search when non-empty. Error when the
// argument is none of the accepted forms.
RunPaths resolve_run(const std::filesystem::path& arg, const std::filesystem::path& records = {});

}  // namespace nexplain::viewer
