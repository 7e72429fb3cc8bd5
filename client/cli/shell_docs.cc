#include "client/cli/shell_docs.h"

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace ckpt::cli {
namespace {

// Every verb, with its sub-verbs (policy set, policy get) as "policy set".
struct Verb {
  std::string name;
  const CLI::App* app;
};

void CollectVerbs(const CLI::App& app, const std::string& prefix,
                  std::vector<Verb>* out) {
  for (const CLI::App* sub : app.get_subcommands({})) {
    const std::string name = prefix.empty()
                                 ? sub->get_name()
                                 : absl::StrCat(prefix, " ", sub->get_name());
    if (sub->get_subcommands({}).empty()) {
      out->push_back({name, sub});
    } else {
      CollectVerbs(*sub, name, out);
    }
  }
}

std::vector<const CLI::Option*> Flags(const CLI::App& app) {
  return app.get_options(
      [](const CLI::Option* option) { return option->nonpositional(); });
}

std::vector<const CLI::Option*> Positionals(const CLI::App& app) {
  return app.get_options([](const CLI::Option* option) {
    return option->get_positional() && !option->nonpositional();
  });
}

// The long names of an option, e.g. "--server".
std::vector<std::string> LongNames(const CLI::Option& option) {
  std::vector<std::string> names;
  for (const std::string& name : option.get_lnames()) {
    names.push_back("--" + name);
  }
  for (const std::string& name : option.get_snames()) {
    names.push_back("-" + name);
  }
  return names;
}

bool TakesValue(const CLI::Option& option) {
  return option.get_items_expected_max() > 0;
}

// Roff text: backslashes escaped, a line never starting with a control
// character, hyphens literal.
std::string Roff(const std::string& text) {
  std::string out = absl::StrReplaceAll(text, {{"\\", "\\e"}, {"-", "\\-"}});
  out = absl::StrReplaceAll(out, {{"\n.", "\n\\&."}, {"\n'", "\n\\&'"}});
  if (!out.empty() && (out[0] == '.' || out[0] == '\'')) out = "\\&" + out;
  return out;
}

std::string OptionSynopsis(const CLI::Option& option) {
  std::string synopsis = absl::StrJoin(LongNames(option), ", ");
  if (TakesValue(option)) {
    std::string type = option.get_type_name();
    if (type.empty()) type = "VALUE";
    absl::StrAppend(&synopsis, " ", type);
  }
  return synopsis;
}

void ManOptions(const std::vector<const CLI::Option*>& options,
                std::ostringstream& out) {
  for (const CLI::Option* option : options) {
    if (option->get_lnames() == std::vector<std::string>{"help"}) continue;
    out << ".TP\n.B " << Roff(OptionSynopsis(*option)) << "\n"
        << Roff(option->get_description()) << "\n";
  }
}

}  // namespace

std::string BashCompletion(const CLI::App& app) {
  std::vector<Verb> verbs;
  CollectVerbs(app, "", &verbs);
  std::vector<std::string> value_options;
  std::vector<std::string> global_flags;
  for (const CLI::Option* option : Flags(app)) {
    for (const std::string& name : LongNames(*option)) {
      global_flags.push_back(name);
      if (TakesValue(*option)) value_options.push_back(name);
    }
  }
  std::vector<std::string> top;
  for (const CLI::App* sub : app.get_subcommands({})) {
    top.push_back(sub->get_name());
  }
  std::ostringstream out;
  out << "# bash completion for ckpt, generated from its CLI definition by\n"
         "# `ckpt completion bash`. Install as\n"
         "# /usr/share/bash-completion/completions/ckpt, or source it.\n"
         "_ckpt() {\n"
         "  local cur=${COMP_WORDS[COMP_CWORD]} "
         "prev=${COMP_WORDS[COMP_CWORD-1]}\n"
         "  local globals=\""
      << absl::StrJoin(global_flags, " ")
      << "\"\n"
         "  local verb=\"\" word i skip=0 opts=\"\" values=\" \"\n";
  // Verbs' own value-taking options, so that their values are not taken
  // for a verb.
  for (const Verb& verb : verbs) {
    for (const CLI::Option* option : Flags(*verb.app)) {
      if (!TakesValue(*option)) continue;
      for (const std::string& name : LongNames(*option)) {
        if (std::find(value_options.begin(), value_options.end(), name) ==
            value_options.end()) {
          value_options.push_back(name);
        }
      }
    }
  }
  out << "  local value_options=\" " << absl::StrJoin(value_options, " ")
      << " \"\n"
         "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
         "    word=${COMP_WORDS[i]}\n"
         "    if ((skip)); then skip=0; continue; fi\n"
         "    case \"${word}\" in\n"
         "      --*=*) ;;\n"
         "      -*) [[ ${value_options} == *\" ${word} \"* ]] && skip=1 ;;\n"
         "      *) case \"${verb}\" in\n"
         "           \"\") verb=${word} ;;\n"
         "           policy) verb=\"policy ${word}\" ;;\n"
         "         esac ;;\n"
         "    esac\n"
         "  done\n"
         "  case \"${verb}\" in\n"
         "    \"\") opts=\""
      << absl::StrJoin(top, " ")
      << "\" ;;\n"
         "    policy) opts=\"";
  std::vector<std::string> policy_subs;
  for (const Verb& verb : verbs) {
    if (verb.name.rfind("policy ", 0) == 0) {
      policy_subs.push_back(verb.name.substr(7));
    }
  }
  out << absl::StrJoin(policy_subs, " ") << "\" ;;\n";
  for (const Verb& verb : verbs) {
    std::vector<std::string> names;
    for (const CLI::Option* option : Flags(*verb.app)) {
      for (const std::string& name : LongNames(*option)) {
        names.push_back(name);
      }
    }
    // `completion SHELL`: its one choice.
    const std::string choices = verb.name == "completion" ? "bash" : "";
    out << "    \"" << verb.name << "\") opts=\"" << absl::StrJoin(names, " ")
        << "\"";
    if (!choices.empty()) out << "; values=\"" << choices << "\"";
    out << " ;;\n";
  }
  out << "  esac\n"
         "  if [[ ${value_options} == *\" ${prev} \"* ]]; then\n"
         "    case \"${prev}\" in\n"
         "      --format) COMPREPLY=($(compgen -W \"safetensors torch\" -- "
         "\"${cur}\")) ;;\n"
         "      --mode) COMPREPLY=($(compgen -W \"min max auto\" -- "
         "\"${cur}\")) ;;\n"
         "      *) COMPREPLY=($(compgen -f -- \"${cur}\")) ;;\n"
         "    esac\n"
         "  elif [[ ${cur} == -* ]]; then\n"
         "    COMPREPLY=($(compgen -W \"${opts} ${globals}\" -- \"${cur}\"))\n"
         "  elif [[ -z ${verb} || ${verb} == policy ]]; then\n"
         "    COMPREPLY=($(compgen -W \"${opts}\" -- \"${cur}\"))\n"
         "  elif [[ ${values} != \" \" ]]; then\n"
         "    COMPREPLY=($(compgen -W \"${values}\" -- \"${cur}\"))\n"
         "  else\n"
         "    COMPREPLY=($(compgen -f -- \"${cur}\"))\n"
         "  fi\n"
         "}\n"
         "complete -o filenames -F _ckpt ckpt\n";
  return out.str();
}

std::string ManPage(const CLI::App& app, const std::string& version) {
  std::vector<Verb> verbs;
  CollectVerbs(app, "", &verbs);
  std::ostringstream out;
  out << ".\\\" Generated from the CLI definition by `ckpt man`; do not edit.\n"
      << ".TH CKPT 1 \"\" \"" << Roff(version) << "\" \"User Commands\"\n"
      << ".SH NAME\nckpt \\- " << Roff(app.get_description()) << "\n"
      << ".SH SYNOPSIS\n.B ckpt\n[\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR "
         "[\\fIARGUMENTS\\fR] [\\fIOPTIONS\\fR]\n"
      << ".SH DESCRIPTION\nEvery command talks to one ckpt\\-server "
         "(\\fB\\-\\-server\\fR), except \\fBcopy\\fR (two), "
         "\\fBcompletion\\fR and \\fBman\\fR (none). Global options may "
         "come before or after the command. `ckpt COMMAND \\-\\-help` "
         "shows the same text as this page.\n"
      << ".SH GLOBAL OPTIONS\n";
  ManOptions(Flags(app), out);
  out << ".SH COMMANDS\n";
  for (const Verb& verb : verbs) {
    std::string usage = absl::StrCat("ckpt ", verb.name);
    for (const CLI::Option* positional : Positionals(*verb.app)) {
      const std::string name = positional->get_name();
      const bool many = positional->get_expected_max() > 1;
      absl::StrAppend(&usage, " ", positional->get_required() ? "" : "[", name,
                      many ? "..." : "", positional->get_required() ? "" : "]");
    }
    out << ".SS \"" << Roff(usage) << "\"\n"
        << Roff(verb.app->get_description()) << "\n";
    for (const CLI::Option* positional : Positionals(*verb.app)) {
      out << ".TP\n.I " << Roff(positional->get_name()) << "\n"
          << Roff(positional->get_description()) << "\n";
    }
    ManOptions(Flags(*verb.app), out);
  }
  out << ".SH EXIT STATUS\n"
         ".TP\n.B 0\nSuccess.\n"
         ".TP\n.B 1\nAn error: printed as `ckpt: CODE: message` on stderr, "
         "or with \\fB\\-\\-json\\fR as one line of JSON, "
         "{\"code\": \"CODE\", \"message\": \"...\"}. CODE is the gRPC "
         "status name (NOT_FOUND, INVALID_ARGUMENT, PERMISSION_DENIED, "
         "DATA_LOSS, ...); \\fBverify\\fR and \\fBgc\\fR exit 1 with "
         "DATA_LOSS when they find damage.\n"
         ".TP\n.B 100 and above\nThe command line did not parse (CLI11's "
         "codes, e.g. 106 for a missing argument, 109 for an unexpected "
         "one), reported the same way.\n"
         ".SH ENVIRONMENT\n"
         ".TP\n.B CKPT_SERVER\nThe default of \\fB\\-\\-server\\fR.\n"
         ".TP\n.B CKPT_TOKEN\nThe bearer token, when "
         "\\fB\\-\\-token\\-file\\fR is not given.\n"
         ".TP\n.B CKPT_TLS_CA, CKPT_TLS_CERT, CKPT_TLS_KEY, "
         "CKPT_TLS_SERVER_NAME\nThe defaults of the \\fB\\-\\-tls\\-*\\fR "
         "options.\n"
         ".TP\n.B CKPT_TO_TOKEN\nThe target's token for \\fBcopy\\fR.\n"
         ".SH SEE ALSO\n\\fBckpt\\-server\\fR(1); README.md and docs/ in the "
         "ckpt repository.\n";
  return out.str();
}

}  // namespace ckpt::cli
