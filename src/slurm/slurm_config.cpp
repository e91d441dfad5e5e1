#include "slurm/slurm_config.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include "core/error.hpp"
#include "slurm/time_limit.hpp"

namespace nexplain {

namespace {

using json = nlohmann::json;

const std::set<std::string> kStageKeys = {"partition", "account", "qos",         "time",          "mem",   "nodes",
                                          "ntasks",    "ntasks_per_node", "cpus_per_task", "gpus_per_task", "overcommit",
                                          "extra"};
const std::set<std::string> kArrayKeys = {"array_layers", "array_parallel"};
const std::set<std::string> kTopKeys = {"launcher", "signal_margin", "gpu_partitions", "env", "job_name",
                                        "tokenize", "collect",       "explain"};

std::string list(const std::set<std::string>& keys) {
  std::string s;
  for (const auto& k : keys) s += (s.empty() ? "" : ", ") + k;
  return s;
}

template <typename T>
void get(const json& t, const char* key, T& out, const std::string& where) {
  if (!t.contains(key)) return;
  try {
    out = t.at(key).get<T>();
  } catch (const json::exception& e) {
    fail("{}: {}: {}", where, key, e.what());
  }
}

void read_stage(const json& t, SlurmStageConfig& s, const std::string& where) {
  get(t, "partition", s.partition, where);
  get(t, "account", s.account, where);
  get(t, "qos", s.qos, where);
  get(t, "time", s.time, where);
  get(t, "mem", s.mem, where);
  get(t, "nodes", s.nodes, where);
  get(t, "ntasks", s.ntasks, where);
  get(t, "ntasks_per_node", s.ntasks_per_node, where);
  get(t, "cpus_per_task", s.cpus_per_task, where);
  get(t, "gpus_per_task", s.gpus_per_task, where);
  get(t, "overcommit", s.overcommit, where);
  get(t, "extra", s.extra, where);
  get(t, "array_layers", s.array_layers, where);
  get(t, "array_parallel", s.array_parallel, where);
}

// An env name that looks like it holds a secret: job scripts are files other people read.
bool secret_like(std::string name) {
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::toupper(c); });
  for (const char* w : {"KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"})
    if (name.find(w) != std::string::npos) return true;
  return false;
}

}  // namespace

SlurmConfig SlurmConfig::from_json(const json& slurm, const std::string& source) {
  SlurmConfig c;
  if (slurm.is_null()) return c;
  const std::string top = source + ": [slurm]";
  if (!slurm.is_object()) fail("{} must be a table", top);
  std::set<std::string> allowed = kTopKeys;
  allowed.insert(kStageKeys.begin(), kStageKeys.end());
  for (const auto& [k, v] : slurm.items())
    if (!allowed.count(k)) fail("{} has an unknown key '{}' (expected one of: {})", top, k, list(allowed));
  get(slurm, "launcher", c.launcher, top);
  get(slurm, "signal_margin", c.signal_margin, top);
  get(slurm, "gpu_partitions", c.gpu_partitions, top);
  get(slurm, "env", c.env, top);
  get(slurm, "job_name", c.job_name, top);
  if (c.launcher != "auto" && c.launcher != "srun" && c.launcher != "mpirun")
    fail("{} launcher = '{}': expected srun, mpirun or auto", top, c.launcher);
  if (c.signal_margin < 10) fail("{} signal_margin = {}: at least 10 seconds are needed to write a checkpoint", top, c.signal_margin);
  for (const auto& [name, value] : c.env) {
    if (name.empty() || !(std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_') ||
        !std::all_of(name.begin(), name.end(), [](unsigned char ch) { return std::isalnum(ch) || ch == '_'; }))
      fail("{} env: '{}' is not a valid environment variable name", top, name);
    if (secret_like(name))
      fail("{} env: '{}' looks like a secret; job scripts are readable files, so pass it in the environment of "
           "`nexplain submit` (sbatch exports it) or name a file with api_key_file",
           top, name);
  }
  // Stage defaults from [slurm], then each [slurm.<stage>].
  SlurmStageConfig defaults;
  read_stage(slurm, defaults, top);
  for (auto [name, stage] : {std::pair{"tokenize", &c.tokenize}, std::pair{"collect", &c.collect}, std::pair{"explain", &c.explain}}) {
    *stage = defaults;
    const std::string where = source + ": [slurm." + name + "]";
    if (!slurm.contains(name)) continue;
    const json& t = slurm.at(name);
    if (!t.is_object()) fail("{} must be a table", where);
    std::set<std::string> keys = kStageKeys;
    if (std::string(name) == "collect") keys.insert(kArrayKeys.begin(), kArrayKeys.end());
    for (const auto& [k, v] : t.items())
      if (!keys.count(k)) fail("{} has an unknown key '{}' (expected one of: {})", where, k, list(keys));
    read_stage(t, *stage, where);
  }
  for (auto [name, stage] : {std::pair{"tokenize", &c.tokenize}, std::pair{"collect", &c.collect}, std::pair{"explain", &c.explain}}) {
    const std::string where = source + ": [slurm." + name + "]";
    SlurmStageConfig& s = *stage;
    if (s.nodes < 1) fail("{} nodes = {}: at least 1", where, s.nodes);
    if (s.ntasks < 1) fail("{} ntasks = {}: at least 1", where, s.ntasks);
    if (s.ntasks_per_node < 0 || s.cpus_per_task < 0 || s.gpus_per_task < 0 || s.array_layers < 0 || s.array_parallel < 0)
      fail("{}: counts must not be negative", where);
    if (!s.time.empty()) {
      try {
        s.time_s = parse_slurm_time(s.time);
      } catch (const Error& e) {
        fail("{} time: {}", where, e.what());
      }
      if (s.time_s <= c.signal_margin)
        fail("{} time = '{}' ({} s) is not longer than [slurm] signal_margin ({} s): the checkpoint signal would "
             "come before the job starts working",
             where, s.time, s.time_s, c.signal_margin);
    }
    if (s.gpus_per_task > 0 &&
        std::find(c.gpu_partitions.begin(), c.gpu_partitions.end(), s.partition) == c.gpu_partitions.end())
      fail("{} gpus_per_task = {}, but partition '{}' is not a GPU partition (list those in [slurm] gpu_partitions; "
           "they are: {})",
           where, s.gpus_per_task, s.partition.empty() ? "(default)" : s.partition,
           c.gpu_partitions.empty() ? "none" : [&] {
             std::string l;
             for (const auto& p : c.gpu_partitions) l += (l.empty() ? "" : ", ") + p;
             return l;
           }());
    for (const auto& line : s.extra)
      if (line.find('\n') != std::string::npos || line.rfind("--", 0) != 0)
        fail("{} extra: '{}': each entry is one sbatch option starting with --", where, line);
  }
  return c;
}

const SlurmStageConfig& SlurmConfig::stage(const std::string& name) const {
  if (name == "tokenize") return tokenize;
  if (name == "collect") return collect;
  if (name == "explain") return explain;
  fail("unknown stage '{}'", name);
}

}  // namespace nexplain
