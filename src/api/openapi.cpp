// Serves the OpenAPI document compiled in from src/api/openapi.json.
#include "api/api.h"

extern const char kOpenApiJson[];

namespace canopy::api {

const std::string& OpenApiDocument() {
  static const std::string doc(kOpenApiJson);
  return doc;
}

}  // namespace canopy::api
