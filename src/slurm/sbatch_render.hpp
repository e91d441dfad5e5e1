#pragma once
// Rendering a sweep stage's sbatch script from the templates in slurm/ (<stage>.sbatch with
// slurm/common.sh inlined): the #SBATCH lines come from [slurm], the paths are absolute, and
// nothing secret is ever written (API keys stay in the environment or in their files).
#include <filesystem>
#include <string>
#include <vector>

#include "slurm/slurm_config.hpp"
#include "sweep/sweep_config.hpp"

namespace nexplain {

struct RenderContext {
  std::filesystem::path templates;  // the slurm/ directory
  std::filesystem::path workdir;    // where the jobs run (relative paths of the sweep file)
  std::filesystem::path nexplain;   // the binary, as the compute nodes see it
  std::filesystem::path sweep_file; // the sweep file the jobs read (a copy in <out>/slurm/)
  std::filesystem::path out;        // the sweep directory, absolute
  std::filesystem::path tokenizer;  // "" = the sweep file's / the default search
};

// `explicit_dir` when given; else ./slurm; else <binary dir>/../slurm (a build directory inside
// the source tree) and <binary dir>/../share/nexplain/slurm (installed). Error listing them.
std::filesystem::path find_templates_dir(const std::filesystem::path& explicit_dir);

// The script for `stage` (tokenize | collect | explain). `layer_parts` non-empty (collect
// only): a job array with one task per part.
std::string render_stage_script(const std::string& stage, const SweepConfig& sweep, const SlurmConfig& slurm,
                                const RenderContext& ctx, const std::vector<std::string>& layer_parts);

// 'text' with single quotes, safe for any bash word.
std::string shell_quote(const std::string& text);

}  // namespace nexplain
