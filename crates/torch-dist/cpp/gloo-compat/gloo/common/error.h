// polyalign: see compat.h.
#pragma once
#include "../compat.h"
