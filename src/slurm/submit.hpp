#pragma once
// `nexplain submit`: a sweep file -> one sbatch job per unfinished stage (tokenize, collect,
// explain), chained with --dependency=afterok and --kill-on-invalid-dep=yes, their ids recorded
// in <out>/slurm/jobs.jsonl. Stages whose output exists are skipped, so resubmitting a sweep
// whose job was killed outright continues from the files it left (collect checkpoints, the
// explain journal).
#include <filesystem>
#include <string>
#include <vector>

namespace nexplain {

struct SubmitOptions {
  std::filesystem::path sweep_file;
  std::filesystem::path out;        // "" = the sweep file's [sweep] out
  std::filesystem::path tokenizer;  // "" = the sweep file's [corpus] tokenizer / default search
  std::filesystem::path templates;  // "" = find_templates_dir's search
  bool dry_run = false;             // render and print, submit nothing
};

struct SubmittedJob {
  std::string stage, job_id;
  std::filesystem::path script;
  std::size_t array_tasks = 0;  // 0 = not an array
};

struct SubmitResult {
  std::string text;  // what the command prints: the scripts (dry run) or the job ids
  std::vector<SubmittedJob> jobs;
};

// Validates the sweep for submission (the sweep file's own checks, [slurm], the model path,
// the corpus inputs); Error naming the file and key. Then renders and (unless dry_run) submits.
SubmitResult submit_sweep(const SubmitOptions& opts);

// <out>/slurm/jobs.jsonl: one line per submission {"time", "jobs": [{"stage", "job_id",
// "script", "array_tasks"}]}.
std::filesystem::path jobs_record_path(const std::filesystem::path& sweep_dir);

}  // namespace nexplain
