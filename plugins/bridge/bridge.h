// plugins/bridge/bridge.h — ferry-bridge: the reference `bridge` plugin's behaviour (config,
// ADD/DEL/CHECK/STATUS, result shape) over ferry's net/ layer, plus GC, deterministic host
// veth names, masquerade teardown by identity and endpoint records for the node agent.
//
// Errors: every verb throws cni::Error; net::Error from the kernel layer is wrapped with the
// step that failed.
#pragma once

#include "cni/cni.h"
#include "config.h"

namespace ferry::bridge {

cni::Plugin plugin();  // the verbs below, for cni::plugin_main

cni::Result cmd_add(const cni::CmdArgs& args);
void cmd_del(const cni::CmdArgs& args);
void cmd_check(const cni::CmdArgs& args);
void cmd_status(const cni::CmdArgs& args);
void cmd_gc(const cni::CmdArgs& args);

}  // namespace ferry::bridge
