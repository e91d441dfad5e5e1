#include "slurm/sbatch_render.hpp"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/error.hpp"

namespace nexplain {

namespace fs = std::filesystem;

namespace {

std::string read_template(const fs::path& path) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot read the sbatch template", path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void replace_all(std::string& s, const std::string& key, const std::string& value) {
  const std::string token = "{{" + key + "}}";
  for (std::size_t pos = 0; (pos = s.find(token, pos)) != std::string::npos; pos += value.size()) s.replace(pos, token.size(), value);
}

fs::path self_dir() {
  std::error_code ec;
  const auto exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : exe.parent_path();
}

}  // namespace

std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

fs::path find_templates_dir(const fs::path& explicit_dir) {
  std::vector<fs::path> tried;
  if (!explicit_dir.empty()) tried.push_back(explicit_dir);
  else {
    tried.push_back(fs::current_path() / "slurm");
    const auto bin = self_dir();
    if (!bin.empty()) {
      tried.push_back(bin.parent_path() / "slurm");
      tried.push_back(bin.parent_path() / "share" / "nexplain" / "slurm");
    }
  }
  for (const auto& d : tried)
    if (fs::exists(d / "common.sh") && fs::exists(d / "collect.sbatch")) return fs::absolute(d);
  std::string list;
  for (const auto& d : tried) list += "\n  " + d.string();
  fail("sbatch templates (slurm/common.sh, slurm/<stage>.sbatch) not found; tried:{}\n(pass --templates DIR)", list);
}

std::string render_stage_script(const std::string& stage, const SweepConfig& sweep, const SlurmConfig& slurm,
                                const RenderContext& ctx, const std::vector<std::string>& layer_parts) {
  const SlurmStageConfig& s = slurm.stage(stage);
  const std::string base = slurm.job_name.empty() ? "nexplain-" + (sweep.name.empty() ? std::string("sweep") : sweep.name) : slurm.job_name;
  const bool array = !layer_parts.empty();
  std::vector<std::string> lines;
  auto add = [&](const std::string& opt) { lines.push_back("#SBATCH " + opt); };
  add("--job-name=" + base + "-" + stage);
  add("--output=" + (ctx.out / "slurm" / (stage + (array ? "-%A_%a.out" : "-%j.out"))).string());
  add("--open-mode=append");  // a requeued run appends to the same output file
  add("--requeue");
  add(fmt::format("--signal=B:USR1@{}", slurm.signal_margin));
  if (!s.partition.empty()) add("--partition=" + s.partition);
  if (!s.account.empty()) add("--account=" + s.account);
  if (!s.qos.empty()) add("--qos=" + s.qos);
  if (!s.time.empty()) add("--time=" + s.time);
  add(fmt::format("--nodes={}", s.nodes));
  add(fmt::format("--ntasks={}", s.ntasks));
  if (s.ntasks_per_node > 0) add(fmt::format("--ntasks-per-node={}", s.ntasks_per_node));
  if (s.cpus_per_task > 0) add(fmt::format("--cpus-per-task={}", s.cpus_per_task));
  if (s.gpus_per_task > 0) add(fmt::format("--gpus-per-task={}", s.gpus_per_task));
  if (!s.mem.empty()) add("--mem=" + s.mem);
  if (s.overcommit) add("--overcommit");
  if (array) {
    std::string spec = fmt::format("0-{}", layer_parts.size() - 1);
    if (s.array_parallel > 0) spec += fmt::format("%{}", s.array_parallel);
    add("--array=" + spec);
  }
  for (const auto& e : s.extra) add(e);
  std::string sbatch;
  for (const auto& l : lines) sbatch += l + "\n";
  if (!sbatch.empty()) sbatch.pop_back();

  std::string env;
  for (const auto& [k, v] : slurm.env) env += "export " + k + "=" + shell_quote(v) + "\n";
  if (!env.empty()) env.pop_back();
  std::string parts;
  for (const auto& p : layer_parts) {
    if (!parts.empty()) parts += ' ';
    parts += shell_quote(p);
  }

  std::string common = read_template(ctx.templates / "common.sh");
  std::string text = read_template(ctx.templates / (stage + ".sbatch"));
  replace_all(text, "COMMON", common);  // first, so common.sh's own placeholders are filled below
  replace_all(text, "SBATCH", sbatch);
  replace_all(text, "ENV", env.empty() ? "# (no [slurm] env)" : env);
  replace_all(text, "WORKDIR", shell_quote(ctx.workdir.string()));
  replace_all(text, "NEXPLAIN", shell_quote(ctx.nexplain.string()));
  replace_all(text, "SWEEP", shell_quote(ctx.sweep_file.string()));
  replace_all(text, "OUT", shell_quote(ctx.out.string()));
  replace_all(text, "LAUNCHER", slurm.launcher);
  replace_all(text, "LAYER_PARTS", parts);
  replace_all(text, "TOKENIZER_ARGS", ctx.tokenizer.empty() ? std::string() : "--tokenizer " + shell_quote(ctx.tokenizer.string()));
  const auto left = text.find("{{");
  if (left != std::string::npos)
    fail("{}: unknown placeholder {}", (ctx.templates / (stage + ".sbatch")).string(), text.substr(left, text.find("}}", left) + 2 - left));
  return text;
}

}  // namespace nexplain
