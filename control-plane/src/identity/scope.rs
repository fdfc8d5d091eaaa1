//! Entra ID scope per resource type (the one place this rule lives).

use crate::catalog::model::ModelType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Azure OpenAI / Foundry models and the inference API.
    CognitiveServices,
    /// Foundry Agent Service.
    AiAzure,
    /// Azure AI Search.
    Search,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::CognitiveServices, Scope::AiAzure, Scope::Search];

    pub fn for_model_type(model_type: ModelType) -> Option<Scope> {
        match model_type {
            ModelType::FoundryModel | ModelType::AiInference => Some(Scope::CognitiveServices),
            ModelType::FoundryAgent => Some(Scope::AiAzure),
            ModelType::AzureAiSearch => Some(Scope::Search),
            ModelType::McpServer => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::CognitiveServices => "https://cognitiveservices.azure.com/.default",
            Scope::AiAzure => "https://ai.azure.com/.default",
            Scope::Search => "https://search.azure.com/.default",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    /// The v1-style resource (scope without `/.default`), as the identity endpoint wants it.
    pub fn resource(self) -> &'static str {
        self.as_str().trim_end_matches("/.default")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_resource_type_gets_its_scope() {
        assert_eq!(
            Scope::for_model_type(ModelType::FoundryAgent)
                .unwrap()
                .as_str(),
            "https://ai.azure.com/.default"
        );
        assert_eq!(
            Scope::for_model_type(ModelType::FoundryModel)
                .unwrap()
                .as_str(),
            "https://cognitiveservices.azure.com/.default"
        );
        assert_eq!(
            Scope::for_model_type(ModelType::AiInference),
            Some(Scope::CognitiveServices)
        );
        assert_eq!(
            Scope::for_model_type(ModelType::AzureAiSearch)
                .unwrap()
                .as_str(),
            "https://search.azure.com/.default"
        );
        assert_eq!(Scope::for_model_type(ModelType::McpServer), None);
        assert_eq!(Scope::Search.resource(), "https://search.azure.com");
    }
}
